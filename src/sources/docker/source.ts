/**
 * The container log source: discovers files, follows each through rotation with at most `max_open_files` open,
 * and resumes each container exactly where its acknowledged records end. One stream per container, so a
 * container's records stay in order and an idle or slow container never holds back another one's checkpoint.
 * Only regular files under the include directories (or allowed_link_targets) are read (guard.ts).
 */
import { dirname } from "node:path";
import { lstatSync, realpathSync } from "node:fs";
import { sleep } from "../../core/backoff.ts";
import type { Source, SourceContext } from "../../core/component.ts";
import { describeError } from "../../core/errors.ts";
import type { Fields } from "../../core/record.ts";
import type { DockerSourceConfig } from "./config.ts";
import { containerIdOf, Discovery, splitPattern } from "./discovery.ts";
import { FileGuard, type Refusal } from "./guard.ts";
import { MetadataCache } from "./metadata.ts";
import { SavedPositions } from "./positions.ts";
import { dockerPosition, type ContainerPositions } from "./position.ts";
import { ContainerRecord } from "./record.ts";
import { exists } from "./files.ts";
import { agentUser } from "../../core/user.ts";
import { Tailer, type FilePosition, type TailedRecord } from "./tailer.ts";


const READ_BUDGET = 256 * 1024;
/** After a new entry appears in a watched directory, rescan every SOON_SCAN_MS for SCAN_OFTEN_MS. */
const SOON_SCAN_MS = 50;
const SCAN_OFTEN_MS = 2_000;
/** Refused files named in a WARN each per minute; more are summed up in one. */
const REFUSAL_WARNINGS = 10;
/** A closed file missing this long is let go. */
const MISSING_FILE_GRACE_MS = 10_000;
/**
 * An include pattern that matches nothing is named again at most this often: it is searched every
 * rescan_interval (1 s by default), and a WARN per search would bury everything else in the log.
 */
const EMPTY_INCLUDE_REPEAT_MS = 10 * 60_000;

/** Records carry the file position after them; the checkpoint keeps one saved position per stream. */
type DockerContext = SourceContext<ContainerPositions, FilePosition>;

export class DockerSource implements Source<FilePosition, ContainerPositions> {
  readonly type = "docker";
  readonly positionSchema = dockerPosition;
  private stopped = false;
  private readonly stopSignal = new AbortController();
  private readonly tailers = new Map<string, Tailer>();
  private readonly discovery: Discovery;
  private readonly metadata = new MetadataCache();
  private readonly saved: SavedPositions;
  private readonly guard: FileGuard;
  /** Paths refused by the guard, with where they led (each is reported once, while it stays that way). */
  private readonly refused = new Map<string, string>();
  private readonly refusalsToReport: Refusal[] = [];
  private refusalWindow = { start: 0, named: 0, unnamed: 0 };
  /** Every read of this source goes through it, one at a time: a read allocates nothing that outlives it. */
  private readonly readBuffer = Buffer.allocUnsafe(READ_BUDGET);
  private started = false;
  /** The start-up line (what is read, from where, how many files) was written. */
  private announced = false;
  private counters: ReturnType<DockerSource["makeCounters"]> | undefined;

  constructor(readonly name: string, private readonly config: DockerSourceConfig) {
    this.discovery = new Discovery(config.include, config.exclude);
    this.saved = new SavedPositions(config.forget_after);
    const bases = config.include.map((pattern) => splitPattern(pattern).base);
    this.guard = new FileGuard([...bases, ...config.allowed_link_targets], (refusal) => this.noteRefusal(refusal));
  }

  async run(ctx: DockerContext): Promise<void> {
    this.counters ??= this.makeCounters(ctx);
    if (!this.started) this.saved.load(ctx.saved);
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
        this.reportScan(ctx);
        this.forgetGone(ctx);
        this.reportRefusals(ctx);
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
          if ((await tailer.read(out, this.readBuffer)) > 0) readAny = true;
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
        if (tailer.finished || (!tailer.isOpen && this.refused.has(tailer.path))) this.letGo(tailer, ctx);
        if (this.refusalsToReport.length > 0) this.reportRefusals(ctx);
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

  checkpoint(watermarks: ReadonlyMap<string, FilePosition>): ContainerPositions {
    const positions = this.saved.checkpoint(watermarks);
    if (this.counters !== undefined) this.counters.positions.value = this.saved.size;
    return positions;
  }

  /** Drops the positions of files gone for forget_after, and has the checkpoint written without them. */
  private forgetGone(ctx: DockerContext): void {
    const live = new Set<string>();
    for (const tailer of this.tailers.values()) live.add(tailer.stream);
    if (this.saved.forgetGone(live, performance.now())) ctx.positionChanged();
    this.counters!.positions.value = this.saved.size;
  }

  private noteRefusal(refusal: Refusal): void {
    if (this.refused.get(refusal.path) === refusal.target) return;
    this.refused.set(refusal.path, refusal.target);
    this.refusalsToReport.push(refusal);
  }

  /**
   * One WARN per refused file, at most REFUSAL_WARNINGS a minute: past that (a directory full of planted links),
   * one WARN at the end of the minute says how many more were refused.
   */
  private reportRefusals(ctx: DockerContext): void {
    const now = performance.now();
    if (now - this.refusalWindow.start >= 60_000) {
      if (this.refusalWindow.unnamed > 0) ctx.log.warn(`Source ${this.name} refused ${this.refusalWindow.unnamed} more files in the last minute (not regular files, or leading outside the include directories and allowed_link_targets); nagare_container_refused_files_total counts them.`);
      this.refusalWindow = { start: now, named: 0, unnamed: 0 };
    }
    for (const { path, target, reason } of this.refusalsToReport) {
      this.counters!.refused.value++;
      if (this.refusalWindow.named >= REFUSAL_WARNINGS) {
        this.refusalWindow.unnamed++;
        continue;
      }
      this.refusalWindow.named++;
      ctx.log.warn(`Source ${this.name} does not read ${path}, which leads to ${target}: ${reason}. Only regular files under the include patterns' directories or allowed_link_targets are read; nothing of it is shipped.`, { path, target });
    }
    this.refusalsToReport.length = 0;
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
  private letGo(tailer: Tailer, ctx: DockerContext): void {
    this.tailers.delete(tailer.path);
    this.metadata.forget(tailer.path);
    ctx.endStream(tailer.stream);
  }

  /** New files get a tailer: at their saved position, else at the head (or the tail on the first scan). */
  private scan(atStartup: boolean, ctx: DockerContext): void {
    const found = this.discovery.scan();
    this.counters!.scans.value++;
    const now = performance.now();
    this.guard.refresh();
    this.forgetRefusals();
    // A scan stopped by an unreadable directory did not see every file: a file it missed is not gone.
    for (const tailer of this.discovery.complete ? this.tailers.values() : []) {
      // Removed while its file was closed (more files than max_open_files): it will never be read again. The
      // container directory is gone (docker rm), or the file has been missing for a while (kubelet deletes old
      // restarts' logs; a rotation leaves the name missing only for an instant).
      if (tailer.isOpen || found.has(tailer.path)) {
        tailer.missingSince = undefined;
        continue;
      }
      tailer.missingSince ??= now;
      if (exists(dirname(tailer.path)) && now - tailer.missingSince < MISSING_FILE_GRACE_MS) continue;
      if (tailer.unreadAtClose > 0) ctx.log.error(`Source ${this.name}: container ${tailer.stream} had its log file ${tailer.path} deleted while the file was closed to stay under max_open_files; the last ${tailer.unreadAtClose} bytes written to it were not read and are lost.`);
      this.letGo(tailer, ctx);
    }
    for (const path of found) {
      if (this.tailers.has(path) || this.stillRefused(path)) continue;
      const stream = containerIdOf(path);
      const saved = this.saved.get(stream);
      const start = saved !== undefined ? { stream, identity: saved.identity, offset: saved.offset, modifiedMs: saved.modifiedMs ?? 0 } : atStartup && this.config.start_at === "tail" && !ctx.fromOldest ? "tail" : undefined;
      const format = this.config.format === "auto" ? undefined : this.config.format;
      this.tailers.set(path, new Tailer(path, stream, format, this.config.max_line_bytes, start, this.guard));
    }
  }

  /**
   * After each scan: a directory under an include pattern that cannot be listed is a problem (its files are not
   * read); a pattern that matches nothing is a WARN, at most every EMPTY_INCLUDE_REPEAT_MS; and after the first
   * scan, the start-up line.
   */
  private reportScan(ctx: DockerContext): void {
    const patterns = this.discovery.patterns;
    const unreadable = patterns.find((p) => p.unreadable !== undefined);
    ctx.reportProblem(
      unreadable?.unreadable === undefined
        ? undefined
        : {
            cause: `cannot read the directory ${unreadable.unreadable.path} (${unreadable.unreadable.code}), so the log files under include pattern ${unreadable.pattern} are not all found`,
            fix: `let the user nagare runs as (${agentUser()}) read it; the installed unit gives nagare CAP_DAC_READ_SEARCH for this`,
          },
    );
    for (const p of patterns) {
      if (p.matched > 0 || p.unreadable !== undefined) continue;
      const why = p.missing ? `${p.base} does not exist (yet)` : `nothing in ${p.base} matches`;
      ctx.log.limited("warn", `include-empty:${p.pattern}`, `Source ${this.name}: include pattern ${p.pattern} matches no file, since ${why}. It is searched again every ${this.config.rescan_interval} ms and a file is read from its start as soon as it appears. If containers log on this host, check the pattern: Docker's json-file logs are /var/lib/docker/containers/*/*-json.log, kubelet's are /var/log/pods/*/*/*.log.`, undefined, EMPTY_INCLUDE_REPEAT_MS);
    }
    if (this.announced) return;
    this.announced = true;
    const c = this.config;
    const files = [...this.tailers.values()];
    const resumed = files.filter((t) => this.saved.get(t.stream) !== undefined).length;
    const exclude = c.exclude.length === 0 ? "" : ` except ${c.exclude.join(", ")}`;
    const startAt = c.start_at === "tail" ? "files found now are read from their end, later ones from their start" : "files are read from their start";
    ctx.log.info(`Source ${this.name} reads container log files matching ${c.include.join(", ")}${exclude} (format ${c.format}; start_at ${c.start_at}: ${startAt}, a saved position wins): ${files.length} file(s) found, ${resumed} with a saved position.`);
  }

  /** A refused path is tried again only once it leads somewhere else. */
  private stillRefused(path: string): boolean {
    const target = this.refused.get(path);
    if (target === undefined) return false;
    let leadsTo: string | undefined;
    try {
      leadsTo = realpathSync(path);
    } catch {
      leadsTo = undefined;
    }
    if (leadsTo === target) return true;
    this.refused.delete(path);
    return false;
  }

  /** Refusals of names that are gone are forgotten, so the map holds only links that exist. */
  private forgetRefusals(): void {
    for (const path of this.refused.keys()) {
      try {
        lstatSync(path);
      } catch {
        this.refused.delete(path);
      }
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

  private emit(out: TailedRecord[], tailer: Tailer, ctx: DockerContext): void {
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

  private makeCounters(ctx: DockerContext) {
    const labels = { source: this.name };
    return {
      truncated: ctx.metrics.counter("nagare_container_truncated_lines_total", "Merged lines cut at max_line_bytes.", labels),
      corrupt: ctx.metrics.counter("nagare_container_corrupt_lines_total", "Lines shipped raw with _nagare_error (bad JSON, truncated writes).", labels),
      openFiles: ctx.metrics.gauge("nagare_container_open_files", "Container log files open right now.", labels),
      refused: ctx.metrics.counter("nagare_container_refused_files_total", "Files not read because they are not regular files, or lead outside the include directories and allowed_link_targets.", labels),
      positions: ctx.metrics.gauge("nagare_container_positions", "Saved file positions held (in memory and in the checkpoint); those of gone files are dropped after forget_after.", labels),
      scans: ctx.metrics.counter("nagare_container_scans_total", "Searches of the include patterns for new files (every rescan_interval, and soon after a watched directory changed).", labels),
      heldDeleted: ctx.metrics.gauge("nagare_container_held_deleted_bytes", "Bytes of deleted log files still held open until they are read.", labels),
    };
  }
}
