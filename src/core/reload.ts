/**
 * Applying a reload to a running pipeline without duplicating records or losing control of memory.
 *
 * Nothing is held or restarted that did not change: a kept source keeps its reader and its batches, whatever
 * state the sinks are in (a reload during an outage leaves the queues as they are). A changed sink is replaced
 * by a new instance under the same name, which takes over the old one's unsettled batches first, in read order;
 * records routed to it are neither re-read nor dropped. A removed sink delivers what it holds for up to the drain
 * timeout, then lets go of the rest. A changed or removed source is stopped, its acknowledged position saved,
 * and its batches that no sink has delivered yet are withdrawn from every sink (its successor reads them
 * again from the saved position). What can arrive twice: batches in flight at that moment, and records one sink
 * had acknowledged while another had not (the saved position is behind them) — both within the buffer. Every byte stays counted in the buffer until
 * the batch holding it is settled by every sink it was routed to.
 */
import type { Sink, Source } from "./component.ts";
import type { SinkDriver } from "./sink-driver.ts";
import type { SourceLane } from "./source-lane.ts";
import type { Logger } from "../observe/log.ts";

/** A reload that keeps the buffer and checkpoint settings: which components stay, which are new. */
export interface Reconfiguration {
  /** Sources and sinks whose config did not change; they keep running. */
  keepSources: ReadonlySet<string>;
  keepSinks: ReadonlySet<string>;
  /** New instances for added or changed components. */
  addSources: readonly Source[];
  addSinks: readonly Sink[];
  routes: ReadonlyMap<string, readonly string[]>;
  /** How long a removed sink may go on delivering what it holds. */
  drainTimeoutMs: number;
}

/** What a reload did, for the agent's log. */
export interface ReloadOutcome {
  /** Components started anew (added or changed). */
  started: string[];
  /** Records a removed sink had not delivered when it was let go, per sink. */
  dropped: Map<string, number>;
}

/** What a reload needs of the pipeline it changes. */
export interface ReloadHost {
  readonly lanes: ReadonlyMap<string, SourceLane>;
  readonly drivers: Map<string, SinkDriver>;
  readonly log: Logger;
  makeDriver(sink: Sink, paused: boolean): SinkDriver;
  closeDriver(driver: SinkDriver): Promise<void>;
  setRoutes(routes: ReadonlyMap<string, readonly string[]>): void;
  addLane(source: Source): void;
  retireLane(lane: SourceLane): void;
  saveCheckpoints(): Promise<void>;
}

export async function reconfigure(host: ReloadHost, change: Reconfiguration): Promise<ReloadOutcome> {
  // Leaving sources first, while every sink still has its driver: what they sealed up to their stop goes to a
  // driver that is then either kept, handed over or retired, so every batch is settled by someone.
  await retireSources(host, [...host.lanes.values()].filter((lane) => !change.keepSources.has(lane.name)));

  const outgoing = [...host.drivers.values()].filter((d) => !change.keepSinks.has(d.sink.name));
  const successorNames = new Set(change.addSinks.map((s) => s.name));
  const replaced = outgoing.filter((d) => successorNames.has(d.sink.name));
  const removed = outgoing.filter((d) => !successorNames.has(d.sink.name));
  // In one synchronous step, so that no batch is sealed in between: new drivers in, removed ones out, every
  // lane routed anew. A successor waits (paused) for its predecessor's batches, which go before its own.
  const replacing = new Set(replaced.map((d) => d.sink.name));
  const successors = new Map<string, SinkDriver>();
  for (const sink of change.addSinks) {
    const driver = host.makeDriver(sink, replacing.has(sink.name));
    successors.set(sink.name, driver);
    host.drivers.set(sink.name, driver);
  }
  for (const driver of removed) host.drivers.delete(driver.sink.name);
  host.setRoutes(change.routes);

  const dropped = new Map<string, number>();
  try {
    await Promise.all(replaced.map((old) => handOver(host, old, successors.get(old.sink.name)!)));
    // Batches of the retired sources that no sink has sent yet are let go (their successors read them again).
    for (const driver of [...host.drivers.values(), ...removed]) driver.withdraw();
    for (const source of change.addSources) host.addLane(source);
  } finally {
    // Even when a new source cannot start (the reload then fails and the previous config is started again), a
    // removed sink is out of the pipeline's map: it must not go on retrying unseen.
    await Promise.all(
      removed.map(async (driver) => {
        const records = await driver.retire(change.drainTimeoutMs);
        await host.closeDriver(driver);
        if (records > 0) dropped.set(driver.sink.name, records);
      }),
    );
  }
  return { started: [...change.addSources, ...change.addSinks].map((c) => c.name), dropped };
}

/** The old instance of a changed sink stops; its unsettled batches go to the new one, oldest first. */
async function handOver(host: ReloadHost, old: SinkDriver, successor: SinkDriver): Promise<void> {
  await old.stop();
  successor.adopt(old.takeUnsettled());
  old.handOverLate(successor);
  await host.closeDriver(old);
}

/**
 * Changed and removed sources stop and their acknowledged positions are saved; then their lanes retire: their
 * outstanding batches are marked withdrawn, and their bytes leave the buffer as each sink lets go of them.
 */
async function retireSources(host: ReloadHost, leaving: readonly SourceLane[]): Promise<void> {
  if (leaving.length === 0) return;
  await Promise.all(leaving.map((lane) => lane.stop()));
  await host.saveCheckpoints();
  for (const lane of leaving) host.retireLane(lane);
}
