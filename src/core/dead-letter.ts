/**
 * Records a destination refused permanently are appended, with the reason, to
 * `<data_dir>/dead-letter/<sink>.jsonl` (mode 0600) and synced before they count as done: a dead letter is
 * the only copy left, so it must be durable before the cursor moves past it.
 */
import { mkdirSync } from "node:fs";
import { appendFile, open } from "node:fs/promises";
import { join } from "node:path";
import { encodeFieldsJson } from "./json.ts";
import type { LogRecord } from "./record.ts";

export interface DeadLetter {
  record: LogRecord;
  reason: string;
}

export class DeadLetterFile {
  readonly dir: string;

  constructor(dataDir: string) {
    this.dir = join(dataDir, "dead-letter");
  }

  pathOf(sink: string): string {
    return join(this.dir, `${sink}.jsonl`);
  }

  async write(sink: string, letters: readonly DeadLetter[]): Promise<void> {
    if (letters.length === 0) return;
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    const at = new Date().toISOString();
    let text = "";
    for (const { record, reason } of letters) {
      text += `{"at":${JSON.stringify(at)},"sink":${JSON.stringify(sink)},"source":${JSON.stringify(record.source)},"id":${JSON.stringify(record.id)},"reason":${JSON.stringify(reason)},"record":${encodeFieldsJson(record, undefined)}}\n`;
    }
    const path = this.pathOf(sink);
    await appendFile(path, text, { mode: 0o600 });
    const file = await open(path, "r");
    try {
      await file.sync();
    } finally {
      await file.close();
    }
  }
}
