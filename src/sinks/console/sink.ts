/** Prints records as JSON lines on stdout or stderr; a write that returned counts as delivered. */
import { BatchWriter } from "../../core/batch-writer.ts";
import type { Batch } from "../../core/batch.ts";
import type { SendResult, Sink } from "../../core/component.ts";
import { NagareError } from "../../core/errors.ts";
import { encodeJsonLines } from "../../core/json.ts";
import type { ConsoleSinkConfig } from "./config.ts";

export class ConsoleSink implements Sink {
  readonly type = "console";
  private readonly writer = new BatchWriter();
  private readonly fd: number;
  private readonly encode: (batch: Batch) => string;

  constructor(readonly name: string, config: ConsoleSinkConfig) {
    this.fd = config.stream === "stderr" ? 2 : 1;
    const idField = config.id_field;
    this.encode = (batch) => encodeJsonLines(batch.records, idField);
  }

  async send(batch: Batch): Promise<SendResult> {
    try {
      await this.writer.write(this.fd, batch, this.encode);
      return { status: "delivered" };
    } catch (err) {
      return { status: "retry", error: new NagareError("SINK_UNAVAILABLE", `cannot write to ${this.fd === 1 ? "stdout" : "stderr"}`, { cause: err, retryable: true }) };
    }
  }

  async close(): Promise<void> {}
}
