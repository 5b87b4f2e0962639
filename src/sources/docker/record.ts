/** A container log line as a pipeline record; the id (from container, file identity and offset) is made lazily. */
import type { Fields, LogRecord } from "../../core/record.ts";
import type { FilePosition } from "./tailer.ts";

export class ContainerRecord implements LogRecord<FilePosition> {
  readonly timeSec: number;
  readonly timeNsec: number;
  readonly binaryFields = undefined;
  private cachedId: string | undefined;

  constructor(
    readonly source: string,
    readonly stream: string,
    readonly fields: Fields,
    time: string,
    readonly size: number,
    readonly position: FilePosition,
    private readonly idKey: string,
  ) {
    const [sec, nsec] = parseTime(time);
    this.timeSec = sec;
    this.timeNsec = nsec;
  }

  get id(): string {
    return (this.cachedId ??= Bun.MD5.hash(this.idKey, "hex") as string);
  }
}

let lastPrefix = "";
let lastPrefixSec = 0;

/**
 * RFC 3339 with nanoseconds ("2024-01-02T03:04:05.123456789Z", or with an offset as containerd writes local
 * time) → seconds and nanoseconds. The whole-second part is cached: consecutive lines share it.
 */
function parseTime(time: string): [number, number] {
  const dot = time.indexOf(".", 19);
  const prefix = time.slice(0, 19);
  let zone = dot < 0 ? time.slice(19) : time.slice(dot).replace(/^\.\d*/, "");
  if (zone === "") zone = "Z";
  const key = prefix + zone;
  let sec: number;
  if (key === lastPrefix) sec = lastPrefixSec;
  else {
    const ms = Date.parse(`${prefix}${zone}`);
    if (Number.isNaN(ms)) {
      const now = Date.now();
      return [Math.floor(now / 1000), (now % 1000) * 1e6];
    }
    sec = Math.floor(ms / 1000);
    lastPrefix = key;
    lastPrefixSec = sec;
  }
  if (dot < 0) return [sec, 0];
  const digits = /^\.(\d{1,9})/.exec(time.slice(dot))?.[1] ?? "";
  return [sec, Number(digits.padEnd(9, "0"))];
}
