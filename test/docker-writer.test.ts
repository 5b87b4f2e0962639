import { afterAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gunzipSync } from "node:zlib";
import {
  ContainerWriter,
  CRI_MAX_LINE_BYTES,
  DOCKER_SPLIT_BYTES,
  dockerJsonString,
  formatGoTime,
  type ContainerWriterOptions,
} from "./support/docker-writer.ts";

const tmp = mkdtempSync(join(tmpdir(), "nagare-docker-writer-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
let n = 0;
function writer(opts: Partial<ContainerWriterOptions> = {}): ContainerWriter {
  return new ContainerWriter({ root: join(tmp, String(n++)), ...opts });
}
const T = new Date("2024-01-02T03:04:05.678Z");
const TS = "2024-01-02T03:04:05.678Z";

function lines(path: string): string[] {
  const s = readFileSync(path, "utf8");
  expect(s.endsWith("\n") || s === "").toBe(true);
  return s === "" ? [] : s.slice(0, -1).split("\n");
}
interface Entry {
  log?: string;
  stream: string;
  time: string;
  attrs?: Record<string, string>;
}
function entries(path: string): Entry[] {
  return lines(path).map((l) => JSON.parse(l) as Entry);
}
function files(c: ContainerWriter): string[] {
  return readdirSync(c.dir).filter((f) => f.startsWith(c.id)).sort();
}

describe("time format (Go RFC3339Nano, UTC)", () => {
  test("trailing fraction zeros are dropped; no fraction when zero", () => {
    expect(formatGoTime(T)).toBe("2024-01-02T03:04:05.678Z");
    expect(formatGoTime(new Date("2024-01-02T03:04:05.600Z"))).toBe("2024-01-02T03:04:05.6Z");
    expect(formatGoTime(new Date("2024-01-02T03:04:05Z"))).toBe("2024-01-02T03:04:05Z");
    expect(formatGoTime(1704164645123456789n)).toBe("2024-01-02T03:04:05.123456789Z");
    expect(formatGoTime(1704164645000000100n)).toBe("2024-01-02T03:04:05.0000001Z");
  });
});

describe("json-file", () => {
  test("one line: the exact bytes dockerd writes", () => {
    const c = writer();
    c.write("hello", "stdout", T);
    c.write("oops", "stderr", T);
    expect(readFileSync(c.path, "utf8")).toBe(
      `{"log":"hello\\n","stream":"stdout","time":"${TS}"}\n{"log":"oops\\n","stream":"stderr","time":"${TS}"}\n`,
    );
    expect(c.path).toBe(join(c.dir, `${c.id}-json.log`));
    expect(c.id).toMatch(/^[0-9a-f]{64}$/);
  });

  test("escaping as dockerd's byte-wise JSON writer", () => {
    const raw = Buffer.concat([Buffer.from(`<a href="x">&\\\t\r\u0001é\u2028日`), Buffer.from([0xff, 0xe6, 0x97]), Buffer.from("z")]);
    // (no non-ASCII inside String.raw: Bun's transpiler rewrites it to \u escapes there)
    expect(dockerJsonString(raw)).toBe(String.raw`"\u003ca href=\"x\"\u003e\u0026\\\u0009\r\u0001` + "é" + String.raw`\u2028` + "日" + String.raw`\ufffd\ufffd\ufffdz"`);
    expect(JSON.parse(dockerJsonString(Buffer.from("<&>\u2029")))).toBe("<&>\u2029");
  });

  test("attrs go between stream and time, keys sorted", () => {
    const c = writer({ attrs: { tag: "web", "com.example": "<x>" } });
    c.write("a", "stdout", T);
    expect(lines(c.path)[0]).toBe(`{"log":"a\\n","stream":"stdout","attrs":{"com.example":"\\u003cx\\u003e","tag":"web"},"time":"${TS}"}`);
  });

  test("\\n inside the text makes several lines; an empty line is a bare \\n", () => {
    const c = writer();
    c.write("a\n\nb", "stdout", T);
    expect(entries(c.path).map((e) => e.log)).toEqual(["a\n", "\n", "b\n"]);
  });

  test("16 KiB split: pieces of exactly 16384 bytes without newline, then the rest with it, same time", () => {
    const c = writer();
    c.write("a".repeat(DOCKER_SPLIT_BYTES - 1), "stdout", T); // fits the buffer with its newline
    c.write("b".repeat(DOCKER_SPLIT_BYTES), "stdout", T); // fills it: a piece, then a bare newline
    c.write("c".repeat(40_000), "stderr"); // 16384 + 16384 + 7232
    const e = entries(c.path);
    expect(e.map((x) => x.log!.length)).toEqual([16384, 16384, 1, 16384, 16384, 7233]);
    expect(e.map((x) => x.log!.endsWith("\n"))).toEqual([true, false, true, false, false, true]);
    expect(e[2]!.log).toBe("\n");
    expect(new Set(e.slice(3).map((x) => x.time)).size).toBe(1);
    expect(e[3]!.time).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z$/);
    expect(e.slice(3).every((x) => x.stream === "stderr")).toBe(true);
  });

  test("the split is by bytes: a character cut in two becomes \\ufffd on both sides, as in dockerd", () => {
    const c = writer();
    c.write("x".repeat(DOCKER_SPLIT_BYTES - 1) + "é" + "y", "stdout", T);
    const e = entries(c.path);
    expect(e[0]!.log).toBe("x".repeat(DOCKER_SPLIT_BYTES - 1) + "\ufffd");
    expect(e[1]!.log).toBe("\ufffdy\n");
  });

  test("writeMany writes the same bytes as single writes", () => {
    const a = writer({ id: "a".repeat(64) });
    const b = writer({ id: "a".repeat(64) });
    const many = Array.from({ length: 1000 }, (_, i) => `line ${i} ${"x".repeat(i % 50)}`);
    a.writeMany(many, "stdout", T);
    for (const l of many) b.write(l, "stdout", T);
    expect(readFileSync(a.path).equals(readFileSync(b.path))).toBe(true);
    expect(lines(a.path)).toHaveLength(1000);
  });

  test("writeRaw appends bytes as they are", () => {
    const c = writer();
    c.write("ok", "stdout", T);
    c.writeRaw(Buffer.from([0x7b, 0xff, 0x0a]));
    c.writeRaw(`{"log":"cut`);
    expect(readFileSync(c.path).subarray(-14).toString("latin1")).toBe(`{\xff\n{"log":"cut`);
  });
});

describe("CRI", () => {
  test("line shape: time stream tag message, the message raw", () => {
    const c = writer({ format: "cri" });
    c.write(`{"json":"stays as is"} <&>`, "stdout", T);
    c.write("", "stderr", T);
    c.write("dos\r", "stdout", T); // containerd drops the \r of \r\n
    expect(readFileSync(c.path, "utf8")).toBe(
      `${TS} stdout F {"json":"stays as is"} <&>\n${TS} stderr F \n${TS} stdout F dos\n`,
    );
    expect(c.path).toBe(join(c.dir, `${c.id}.log`));
  });

  test("split: a line of max_container_log_line_size is one F; longer ones are P pieces of exactly that size", () => {
    const c = writer({ format: "cri" });
    c.write("a".repeat(CRI_MAX_LINE_BYTES), "stdout", T);
    c.write("b".repeat(CRI_MAX_LINE_BYTES + 1), "stdout");
    c.write("c".repeat(40_000), "stdout", T);
    const ls = lines(c.path).map((l) => {
      const [time, stream, tag, ...rest] = l.split(" ");
      return { time, stream, tag, len: rest.join(" ").length };
    });
    expect(ls.map((l) => [l.tag, l.len])).toEqual([
      ["F", 16384],
      ["P", 16384],
      ["F", 1],
      ["P", 16384],
      ["P", 16384],
      ["F", 7232],
    ]);
    for (const l of ls) expect(l.time).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z$/);
  });

  test("raw bytes: a cut inside a character leaves it split across pieces, bytes intact", () => {
    const c = writer({ format: "cri" });
    const text = "x".repeat(CRI_MAX_LINE_BYTES - 1) + "é";
    c.write(text, "stdout", T);
    const file = readFileSync(c.path);
    const nl = file.indexOf(10);
    expect(file[nl - 1]).toBe(0xc3);
    expect(file[nl + 1 + `${TS} stdout F `.length]).toBe(0xa9);
  });
});

describe("rotation", () => {
  /** Reassembles the logged texts from the rotated files, oldest first. */
  function texts(c: ContainerWriter, fileList: string[]): string[] {
    const ordered = [...fileList].sort((a, b) => rank(b) - rank(a));
    return ordered.flatMap((f) => entries(join(c.dir, f)).map((e) => e.log!.replace(/\n$/, "")));
  }
  function rank(f: string): number {
    const m = /\.(\d+)$/.exec(f);
    return m ? Number(m[1]) : 0;
  }

  test("rename (dockerd): .N shifted, the file renamed to .1, a new file created; max-file files kept", () => {
    const c = writer({ maxSize: 1000, maxFiles: 3 });
    const inode0 = statSync(c.path).ino;
    let i = 0;
    while (c.currentSize < 1000) c.write(`line ${i++} ${"x".repeat(80)}`, "stdout", T);
    const entry = readFileSync(c.path, "utf8").indexOf("\n") + 1; // bytes of one entry
    expect(files(c)).toEqual([`${c.id}-json.log`]);
    expect(statSync(c.path).size).toBeGreaterThan(1000); // dockerd rotates only once the file is full: it overshoots
    expect(c.rotations).toBe(0);
    c.write(`line ${i++} ${"x".repeat(80)}`, "stdout", T);
    expect(c.rotations).toBe(1);
    expect(files(c)).toEqual([`${c.id}-json.log`, `${c.id}-json.log.1`]);
    expect(statSync(`${c.path}.1`).ino).toBe(inode0); // renamed, not copied
    expect(statSync(c.path).ino).not.toBe(inode0);
    expect(statSync(c.path).size).toBe(entry);
    while (i < 60) c.write(`line ${i++} ${"x".repeat(80)}`, "stdout", T);
    expect(files(c)).toEqual([`${c.id}-json.log`, `${c.id}-json.log.1`, `${c.id}-json.log.2`]);
    for (const f of [".1", ".2"]) {
      const size = statSync(c.path + f).size;
      expect(size).toBeGreaterThanOrEqual(1000);
      expect(size).toBeLessThan(1000 + entry);
    }
    // the kept files hold the most recent lines, contiguous and in order
    const kept = texts(c, files(c));
    const lastIndex = Number(/line (\d+)/.exec(kept[0]!)![1]);
    expect(kept).toEqual(Array.from({ length: 60 - lastIndex }, (_, k) => `line ${lastIndex + k} ${"x".repeat(80)}`));
  });

  test("rename with max-file 1: the file is deleted and created anew", () => {
    const c = writer({ maxSize: 300 });
    for (let i = 0; i < 20; i++) c.write(`l${i} ${"y".repeat(60)}`, "stdout", T);
    expect(files(c)).toEqual([`${c.id}-json.log`]);
    expect(c.rotations).toBeGreaterThan(3);
    expect(entries(c.path).at(-1)!.log).toStartWith("l19 ");
  });

  test("copytruncate (logrotate): copied to .1, then truncated in place (same inode)", () => {
    const c = writer({ maxSize: 1000, maxFiles: 3, rotation: "copytruncate" });
    const inode = statSync(c.path).ino;
    for (let i = 0; i < 40; i++) c.write(`line ${i} ${"x".repeat(80)}`, "stdout", T);
    expect(files(c)).toEqual([`${c.id}-json.log`, `${c.id}-json.log.1`, `${c.id}-json.log.2`]);
    expect(statSync(c.path).ino).toBe(inode);
    expect(statSync(`${c.path}.1`).ino).not.toBe(inode);
    // writes continue at offset 0 of the truncated file (O_APPEND), no hole of zeros
    expect(readFileSync(c.path)[0]).toBe(0x7b);
    const kept = texts(c, files(c));
    const first = Number(/line (\d+)/.exec(kept[0]!)![1]);
    expect(kept.at(-1)).toStartWith("line 39 ");
    expect(kept).toHaveLength(40 - first);
  });

  test("explicit rotate(), and the pieces of one split line can straddle a rotation", () => {
    const c = writer({ maxSize: 20_000, maxFiles: 2 });
    c.write("z".repeat(40_000), "stdout", T);
    const old = entries(`${c.path}.1`);
    const cur = entries(c.path);
    expect(old.map((e) => e.log!.length)).toEqual([16384, 16384]);
    expect(cur.map((e) => e.log!.length)).toEqual([7233]);
    c.rotate();
    expect(statSync(c.path).size).toBe(0);
    expect(entries(`${c.path}.1`).map((e) => e.log!.length)).toEqual([7233]);
    expect(files(c)).toHaveLength(2);
  });

  test("compress: rotated files become .N.gz, shifted under their .gz names", () => {
    const c = writer({ maxSize: 500, maxFiles: 3, compress: true });
    for (let i = 0; i < 30; i++) c.write(`gz ${i} ${"w".repeat(50)}`, "stdout", T);
    expect(files(c)).toEqual([`${c.id}-json.log`, `${c.id}-json.log.1.gz`, `${c.id}-json.log.2.gz`]);
    const older = gunzipSync(readFileSync(`${c.path}.2.gz`)).toString();
    const newer = gunzipSync(readFileSync(`${c.path}.1.gz`)).toString();
    const all = (older + newer + readFileSync(c.path, "utf8")).trimEnd().split("\n").map((l) => JSON.parse(l).log);
    expect(all.at(-1)).toStartWith("gz 29 ");
    const first = Number(/gz (\d+)/.exec(all[0])![1]);
    expect(all).toHaveLength(30 - first);
    expect(JSON.parse(readFileSync(join(c.dir, "hostconfig.json"), "utf8")).LogConfig.Config.compress).toBe("true");
  });

  test("CRI files rotate the same way", () => {
    const c = writer({ format: "cri", maxSize: 500, maxFiles: 2 });
    for (let i = 0; i < 30; i++) c.write(`cri ${i} ${"q".repeat(50)}`, "stdout", T);
    expect(files(c)).toEqual([`${c.id}.log`, `${c.id}.log.1`]);
    expect(lines(c.path).at(-1)).toStartWith(`${TS} stdout F cri 29 `);
  });
});

describe("metadata", () => {
  test("config.v2.json as dockerd writes it; setMetadata replaces it atomically; remove deletes the directory", () => {
    const c = writer({ name: "web", image: "nginx:1.27", labels: { "com.example.b": "2", "com.example.a": "1" }, maxSize: 10_000_000, maxFiles: 3 });
    const raw = readFileSync(join(c.dir, "config.v2.json"), "utf8");
    expect(raw).not.toContain("\n");
    const cfg = JSON.parse(raw);
    expect(cfg.ID).toBe(c.id);
    expect(cfg.Name).toBe("/web");
    expect(cfg.Config.Image).toBe("nginx:1.27");
    expect(cfg.Config.Labels).toEqual({ "com.example.a": "1", "com.example.b": "2" });
    expect(Object.keys(cfg.Config.Labels)).toEqual(["com.example.a", "com.example.b"]);
    expect(cfg.LogPath).toBe(c.path);
    expect(cfg.Config.Hostname).toBe(c.id.slice(0, 12));
    expect(cfg.State.Running).toBe(true);
    expect(Object.keys(cfg).slice(0, 4)).toEqual(["StreamConfig", "State", "ID", "Created"]);
    const host = JSON.parse(readFileSync(join(c.dir, "hostconfig.json"), "utf8"));
    expect(host.LogConfig).toEqual({ Type: "json-file", Config: { "max-size": "10000000", "max-file": "3" } });

    c.setMetadata({ name: "web-renamed", labels: { x: "y" } });
    const after = JSON.parse(readFileSync(join(c.dir, "config.v2.json"), "utf8"));
    expect(after.Name).toBe("/web-renamed");
    expect(after.Config.Image).toBe("nginx:1.27");
    expect(after.Config.Labels).toEqual({ x: "y" });
    expect(readdirSync(c.dir).filter((f) => f.startsWith(".tmp-"))).toEqual([]);

    c.write("still writing");
    c.remove();
    expect(existsSync(c.dir)).toBe(false);
    expect(() => c.write("gone")).toThrow();
  });

  test("defaults: random id, a name from the id, an empty label map", () => {
    const c = writer();
    const cfg = JSON.parse(readFileSync(join(c.dir, "config.v2.json"), "utf8"));
    expect(cfg.Name).toBe(`/test-${c.id.slice(0, 12)}`);
    expect(cfg.Config.Labels).toEqual({});
    expect(writer().id).not.toBe(c.id);
    expect(() => writer({ id: "abc" })).toThrow();
  });
});
