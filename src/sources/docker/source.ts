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
/** After a new entry appears in a watched directory, rescan every SOON_SCAN_MS for SCAN_OFTEN_MS. */
const SOON_SCAN_MS = 50;
const SCAN_OFTEN_MS = 2_000;
/** A closed file missing this long is let go. */
const MISSING_FILE_GRACE_MS = 10_000;

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
    /** Until then rescans come every SOON_SCAN_MS: something appeared in a watched directory. */
    let scanOftenUntil = 0;
    let lastScan = 0;
    let turn = 0;
    const out: TailedRecord[] = [];
    while (!this.stopped) {
      const now = performance.now();
      if (this.discovery.takeChanged()) scanOftenUntil = now + SCAN_OFTEN_MS;
      if (now >= nextScan || (now < scanOftenUntil && now >= lastScan + SOON_SCAN_MS)) {
        this.scan(firstScan && nextScan === 0, ctx);
        await this.updateGauges();
        lastScan = performance.now();
        nextScan = lastScan + this.config.rescan_interval;
      }
      const tailers = [...this.tailers.values()];
      let readAny = false;
      for (let i = 0; i < tailers.length && !this.stopped; i++) {
        const wait = ctx.waitForRoom();
        if (wait !== undefined) await this.whilePaused(wait);
        if (this.stopped) break;
        const tailer = tailers[(turn + i) % tailers.length]!;
        try {
          await this.makeRoomFor(tailer);
          if ((await tailer.read(out, READ_BUDGET)) > 0) readAny = true;
        } catch (err) {
          ctx.log.limited("warn", "read-failed", `Source ${this.name} could not read ${tailer.path}; it tries again: ${describeError(err)}.`);
          await tailer.close();
        }
        if (tailer.resumedCompressed !== undefined) {
          ctx.log.info(`Source ${this.name}: ${tailer.resumedCompressed}.`);
          tailer.resumedCompressed = undefined;
        }
        if (tailer.lost !== undefined) {
          ctx.log.error(`Source ${this.name}: ${tailer.lost}.`);
          tailer.lost = undefined;
        }
        if (out.length > 0) this.emit(out, tailer, ctx);
        if (tailer.finished) this.letGo(tailer, ctx);
      }
      turn++;
      if (!readAny) await sleep(this.config.poll_interval, this.stopSignal.signal);
    }
    this.discovery.close();
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
      if (!existsSync(dirname(position.identity.path))) continue;
      containers[stream] = { identity: position.identity, offset: position.offset, modifiedMs: position.modifiedMs };
    }
    this.saved = containers;
    return { containers };
  }

  /** Waits for room in the buffer; meanwhile keeps the gauges true (a deleted file held open shows up here). */
  private async whilePaused(wait: Promise<void>): Promise<void> {
    let room = false;
    void wait.then(() => (room = true));
    while (!room && !this.stopped) {
      await Promise.race([wait, sleep(this.config.rescan_interval, this.stopSignal.signal)]);
      if (!room) await this.updateGauges();
    }
  }

  private async updateGauges(): Promise<void> {
    let held = 0;
    let open = 0;
    for (const tailer of this.tailers.values()) {
      if (!tailer.isOpen) continue;
      open++;
      held += await tailer.checkHeldDeleted();
    }
    this.counters!.openFiles.value = open;
    this.counters!.heldDeleted.value = held;
  }

  /** A removed container's file was read to its end: forget the container (its saved position is pruned). */
  private letGo(tailer: Tailer, ctx: SourceContext): void {
    this.tailers.delete(tailer.path);
    this.metadata.forget(tailer.path);
    ctx.endStream(tailer.stream);
  }

  /** New files get a tailer: at their saved position, else at the head (or the tail on the first scan). */
  private scan(atStartup: boolean, ctx: SourceContext): void {
    const found = this.discovery.scan();
    const now = performance.now();
    for (const tailer of this.tailers.values()) {
      // Removed while its file was closed (more files than max_open_files): it will never be read again. The
      // container directory is gone (docker rm), or the file has been missing for a while (kubelet deletes old
      // restarts' logs; a rotation leaves the name missing only for an instant).
      if (tailer.isOpen || found.has(tailer.path)) {
        tailer.missingSince = undefined;
        continue;
      }
      tailer.missingSince ??= now;
      if (existsSync(dirname(tailer.path)) && now - tailer.missingSince < MISSING_FILE_GRACE_MS) continue;
      if (tailer.unreadAtClose > 0) ctx.log.error(`Source ${this.name}: container ${tailer.stream} had its log file ${tailer.path} deleted while the file was closed to stay under max_open_files; the last ${tailer.unreadAtClose} bytes written to it were not read and are lost.`);
      this.letGo(tailer, ctx);
    }
    for (const path of found) {
      if (this.tailers.has(path)) continue;
      const stream = containerIdOf(path);
      const saved = this.saved[stream];
      const start = saved !== undefined ? { stream, identity: saved.identity, offset: saved.offset, modifiedMs: saved.modifiedMs ?? 0 } : atStartup && this.config.start_at === "tail" && !ctx.fromOldest ? "tail" : undefined;
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
    const meta = this.config.metadata ? this.metadata.get(tailer.path) : undefined;
    for (const { merged, position, identity } of out) {
      const fields: Fields = { log: merged.text, stream: merged.stream, time: merged.time, container_id: tailer.stream };
      if (meta !== undefined) {
        fields.container_name = meta.container_name;
        if (meta.image !== undefined) fields.image = meta.image;
        if (meta.labels !== undefined) fields.labels = meta.labels;
        if (meta.pod_namespace !== undefined) fields.pod_namespace = meta.pod_namespace;
        if (meta.pod_name !== undefined) fields.pod_name = meta.pod_name;
        if (meta.pod_uid !== undefined) fields.pod_uid = meta.pod_uid;
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
      // The time (to the nanosecond) tells apart two lines at one offset of one inode (copytruncate, inode reuse).
      const idKey = `${tailer.stream}:${identity.dev}:${identity.ino}:${merged.endOffset}:${merged.time}`;
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
