// Proves the general helpers in test/support/util.ts: the suite's one wait helper, memory readings, temp dirs.
import { describe, expect, test } from "bun:test";
import { existsSync } from "node:fs";
import { memoryOf, tempDir, waitFor } from "./support/util.ts";

describe("waitFor / memoryOf / tempDir", () => {
  test("waitFor returns the value or throws naming what", async () => {
    let n = 0;
    expect(await waitFor("n to reach 3", () => (++n >= 3 ? n : 0))).toBe(3);
    await expect(waitFor("the impossible", () => false, 100)).rejects.toThrow(/the impossible/);
    await expect(
      waitFor(
        "a throwing cond",
        () => {
          throw new Error("boom");
        },
        60,
      ),
    ).rejects.toThrow(/a throwing cond.*boom/);
  });

  test("waitFor polls at the given interval", async () => {
    let calls = 0;
    await expect(waitFor("never", () => ++calls > 1000, 300, 100)).rejects.toThrow(/never/);
    // One poll per 100 ms makes at most 4 calls in 300 ms (a slow machine makes fewer); the default 20 ms would
    // make about 16.
    expect(calls).toBeGreaterThanOrEqual(1);
    expect(calls).toBeLessThanOrEqual(6);
  });

  test("memoryOf reads VmHWM and VmRSS", () => {
    const m = memoryOf(process.pid);
    expect(m.rss).toBeGreaterThan(1 << 20);
    expect(m.hwm).toBeGreaterThanOrEqual(m.rss);
  });

  test("tempDir creates and removes", () => {
    const t = tempDir();
    expect(t.path).toMatch(/nagare-test-/);
    expect(existsSync(t.path)).toBe(true);
    t.cleanup();
    expect(existsSync(t.path)).toBe(false);
  });
});
