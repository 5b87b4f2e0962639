/** Prints records as JSON lines on stdout or stderr; a write that returned counts as delivered. */
import { writeBatch, type PendingWrite } from "../../core/batch-writer.ts";
import type { Batch } from "../../core/batch.ts";
import type { SendResult, Sink } from "../../core/component.ts";
import type { Delivery } from "../../core/delivery.ts";
import { NagareError } from "../../core/errors.ts";
import { encodeJsonLines, JsonWriter } from "../../core/json.ts";
import type { ConsoleSinkConfig } from "./config.ts";

export class ConsoleSink implements Sink<PendingWrite> {
  readonly type = "console";
  /** One batch at a time: lines of the next batch must not interleave with a batch being written. */
  readonly maxInFlight = 1;
  private readonly fd: number;
  private readonly encode: (batch: Batch) => Buffer;

  constructor(readonly name: string, config: ConsoleSinkConfig) {
    this.fd = config.stream === "stderr" ? 2 : 1;
    const idField = config.id_field;
    const writer = new JsonWriter();
    this.encode = (batch) => encodeJsonLines(batch.records, idField, writer);
  }

  async send(delivery: Delivery<PendingWrite>): Promise<SendResult> {
    try {
      await writeBatch(this.fd, delivery, this.encode);
      return { status: "delivered" };
    } catch (err) {
      // A closed or full stream is the host's to fix; nothing in the records makes them undeliverable.
      return { status: "failed", error: new NagareError("SINK_UNAVAILABLE", `cannot write to ${this.fd === 1 ? "stdout" : "stderr"}`, { cause: err, retryable: true }) };
    }
  }

  async close(): Promise<void> {}
}
