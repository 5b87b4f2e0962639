/**
 * The container log source: discovers files, follows each through rotation with at most `max_open_files` open,
 * and resumes each container exactly where its acknowledged records end. One stream per container, so a
 * container's records stay in order and an idle or slow container never holds back another one's checkpoint.
 */
import { dirname } from "node:path";
import { existsSync } from "node:fs";
import { sleep } from "../../core/backoff.ts";
import type { Source, SourceContext } from "../../core/component.ts";
import { describeError } from "../../core/errors.ts";
import type { Fields } from "../../core/record.ts";
import type { DockerSourceConfig } from "./config.ts";
import { containerIdOf, Discovery } from "./discovery.ts";
import type { FileIdentity } from "./files.ts";
import { MetadataCache } from "./metadata.ts";
import { ContainerRecord } from "./record.ts";
import { Tailer, type FilePosition, type TailedRecord } from "./tailer.ts";

/** What the source saves: per container, the file and the offset after its last acknowledged record. */
export interface ContainerPositions {
  containers: Record<string, { identity: FileIdentity; offset: number; modifiedMs: number }>;
}

const READ_BUDGET = 256 * 1024;

export class DockerSource implements Source {
  readonly type = "docker";
  private stopped = false;
  private readonly stopSignal = new AbortController();
  private readonly tailers = new Map<string, Tailer>();
  private readonly discovery: Discovery;
  private readonly metadata = new MetadataCache();
  private saved: ContainerPositions["containers"] = {};
  private started = false;
  private counters: ReturnType<DockerSource["makeCounters"]> | undefined;

  constructor(readonly name: string, private readonly config: DockerSourceConfig) {
    this.discovery = new Discovery(config.include, config.exclude);
  }

  async run(ctx: SourceContext): Promise<void> {
    this.counters ??= this.makeCounters(ctx);
    if (!this.started) this.saved = { ...((ctx.saved as ContainerPositions | undefined)?.containers ?? {}) };
    const firstScan = !this.started;
    this.started = true;
    let nextScan = 0;
    let turn = 0;
    const out: TailedRecord[] = [];
    while (!this.stopped) {
      if (performance.now() >= nextScan) {
        this.scan(firstScan && nextScan === 0);
        nextScan = performance.now() + this.config.rescan_interval;
      }
      const tailers = [...this.tailers.values()];
      let readAny = false;
      for (let i = 0; i < tailers.length && !this.stopped; i++) {
        const wait = ctx.waitForRoom();
        if (wait !== undefined) await Promise.race([wait, sleep(60_000, this.stopSignal.signal)]);
        if (this.stopped) break;
        const tailer = tailers[(turn + i) % tailers.length]!;
        try {
          await this.makeRoomFor(tailer);
          if ((await tailer.read(out, READ_BUDGET)) > 0) readAny = true;
        } catch (err) {
          ctx.log.limited("warn", "read-failed", `Source ${this.name} could not read ${tailer.path}; it tries again: ${describeError(err)}.`);
          await tailer.close();
        }
        if (tailer.lost !== undefined) {
          ctx.log.warn(`Source ${this.name}: ${tailer.lost}; lines written in between may be missing (the file was rotated away or deleted before it was read).`);
          tailer.lost = undefined;
        }
        if (out.length > 0) this.emit(out, tailer, ctx);
        if (tailer.finished) this.tailers.delete(tailer.path);
      }
      turn++;
      this.counters.openFiles.value = tailers.filter((t) => t.isOpen).length;
      this.counters.heldDeleted.value = tailers.reduce((n, t) => n + t.heldDeletedBytes, 0);
      if (!readAny) await sleep(this.config.poll_interval, this.stopSignal.signal);
    }
    await Promise.all([...this.tailers.values()].map((t) => t.close()));
  }

  stop(): void {
    this.stopped = true;
    this.stopSignal.abort();
  }

  checkpoint(watermarks: ReadonlyMap<string, unknown>): ContainerPositions {
    const containers: ContainerPositions["containers"] = {};
    // Positions of containers not read yet this run are kept while their files exist; gone ones are pruned.
    for (const [stream, saved] of Object.entries(this.saved)) if (existsSync(dirname(saved.identity.path))) containers[stream] = saved;
    for (const [stream, mark] of watermarks) {
      const position = mark as FilePosition;
      containers[stream] = { identity: position.identity, offset: position.offset, modifiedMs: position.modifiedMs };
    }
    this.saved = containers;
    return { containers };
  }

  /** New files get a tailer: at their saved position, else at the head (or the tail on the first scan). */
  private scan(atStartup: boolean): void {
    for (const path of this.discovery.scan()) {
      if (this.tailers.has(path)) continue;
      const stream = containerIdOf(path);
      const saved = this.saved[stream];
      const start = saved !== undefined ? { stream, identity: saved.identity, offset: saved.offset, modifiedMs: saved.modifiedMs ?? 0 } : atStartup && this.config.start_at === "tail" ? "tail" : undefined;
      const format = this.config.format === "auto" ? undefined : this.config.format;
      this.tailers.set(path, new Tailer(path, stream, format, this.config.max_line_bytes, start));
    }
  }

  /** Keeps open descriptors under max_open_files by closing the least recently read ones. */
  private async makeRoomFor(tailer: Tailer): Promise<void> {
    if (tailer.isOpen) return;
    const open = [...this.tailers.values()].filter((t) => t.isOpen);
    if (open.length < this.config.max_open_files) return;
    open.sort((a, b) => a.lastReadAt - b.lastReadAt);
    for (const t of open.slice(0, open.length - this.config.max_open_files + 1)) await t.close();
  }

  private emit(out: TailedRecord[], tailer: Tailer, ctx: SourceContext): void {
    const meta = this.config.metadata ? this.metadata.get(dirname(tailer.path)) : undefined;
    for (const { merged, position, identity } of out) {
      const fields: Fields = { log: merged.text, stream: merged.stream, time: merged.time, container_id: tailer.stream };
      if (meta !== undefined) {
        fields.container_name = meta.container_name;
        fields.image = meta.image;
        fields.labels = meta.labels;
      }
      if (merged.attrs !== undefined) fields.attrs = merged.attrs;
      if (merged.truncated) {
        fields._nagare_truncated = true;
        this.counters!.truncated.value++;
      }
      if (merged.error !== undefined) {
        fields._nagare_error = merged.error;
        this.counters!.corrupt.value++;
      }
      const size = 2 * merged.text.length + 600;
      const idKey = `${tailer.stream}:${identity.dev}:${identity.ino}:${merged.endOffset}`;
      ctx.emit(new ContainerRecord(this.name, tailer.stream, fields, merged.time, size, position, idKey));
    }
    out.length = 0;
  }

  private makeCounters(ctx: SourceContext) {
    const labels = { source: this.name };
    return {
      truncated: ctx.metrics.counter("nagare_container_truncated_lines_total", "Merged lines cut at max_line_bytes.", labels),
      corrupt: ctx.metrics.counter("nagare_container_corrupt_lines_total", "Lines shipped raw with _nagare_error (bad JSON, truncated writes).", labels),
      openFiles: ctx.metrics.gauge("nagare_container_open_files", "Container log files open right now.", labels),
      heldDeleted: ctx.metrics.gauge("nagare_container_held_deleted_bytes", "Bytes of deleted log files still held open until they are read.", labels),
    };
  }
}
