/**
 * Pieces of the docker source that need no agent: kubelet path metadata, gzipped rotated files read as plain, the
 * tailer at a rename.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { appendFileSync, mkdtempSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { kubeletMetadataOf } from "../src/sources/docker/metadata.ts";
import { GzipLogFile } from "../src/sources/docker/gzip-file.ts";
import { Tailer, type TailedRecord } from "../src/sources/docker/tailer.ts";
import { FileGuard } from "../src/sources/docker/guard.ts";

const tmp = mkdtempSync(join(tmpdir(), "nagare-docker-files-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
const guard = new FileGuard([tmp], () => undefined);

describe("kubelet path metadata", () => {
  test("/var/log/pods/<namespace>_<pod>_<uid>/<container>/<restart>.log", () => {
    expect(kubeletMetadataOf("/var/log/pods/kube-system_coredns-5d78c9869d-4kq2l_0b3f5a2e-7c1d-4e8f-9a6b-1c2d3e4f5a6b/coredns/3.log")).toEqual({
      container_name: "coredns",
      pod_namespace: "kube-system",
      pod_name: "coredns-5d78c9869d-4kq2l",
      pod_uid: "0b3f5a2e-7c1d-4e8f-9a6b-1c2d3e4f5a6b",
    });
  });

  test("/var/log/containers/<pod>_<namespace>_<container>-<id>.log", () => {
    const id = "a".repeat(64);
    expect(kubeletMetadataOf(`/var/log/containers/web-0_shop_nginx-sidecar-${id}.log`)).toEqual({ container_name: "nginx-sidecar", pod_namespace: "shop", pod_name: "web-0" });
  });

  test("other layouts get nothing from the path", () => {
    const id = "b".repeat(64);
    expect(kubeletMetadataOf(`/var/lib/docker/containers/${id}/${id}-json.log`)).toBeUndefined();
    expect(kubeletMetadataOf(`/var/log/pods/not-a-pod-dir/app/0.log`)).toBeUndefined();
    expect(kubeletMetadataOf(`/var/log/pods/ns_pod_uid/app/current.log`)).toBeUndefined();
    expect(kubeletMetadataOf(`/srv/logs/${id}.log`)).toBeUndefined();
  });
});

describe("GzipLogFile", () => {
  const plain = Buffer.from(Array.from({ length: 20_000 }, (_, i) => `line ${i} ${"z".repeat(i % 50)}\n`).join(""));
  const path = join(tmp, "x.log.1.gz");
  writeFileSync(path, gzipSync(plain));
  const original = { dev: 1, ino: 2, mtimeMs: 3 };

  test("reads the plain bytes at their plain offsets, forward and back, and reports the plain size", async () => {
    const file = (await GzipLogFile.open(path, original, guard))!;
    expect((await file.stat()).size).toBe(plain.length);
    expect((await file.stat()).ino).toBe(2);
    const out = Buffer.alloc(plain.length);
    let at = 0;
    for (;;) {
      const { bytesRead } = await file.read(out, at, 100_000, at);
      if (bytesRead === 0) break;
      at += bytesRead;
    }
    expect(at).toBe(plain.length);
    expect(out.equals(plain)).toBe(true);
    // A read behind the stream (not in the kept prefix) starts over and still gives the right bytes.
    const again = Buffer.alloc(1000);
    const { bytesRead } = await file.read(again, 0, 1000, 5000);
    expect(again.subarray(0, bytesRead).equals(plain.subarray(5000, 5000 + bytesRead))).toBe(true);
    await file.close();
  });

  test("a file that is not gzip is refused; a cut one ends early with the reason", async () => {
    const notGzip = join(tmp, "y.log.1.gz");
    writeFileSync(notGzip, plain.subarray(0, 5000));
    expect(await GzipLogFile.open(notGzip, original, guard)).toBeUndefined();

    const cut = join(tmp, "z.log.1.gz");
    const whole = gzipSync(plain);
    writeFileSync(cut, whole.subarray(0, Math.floor(whole.length / 2)));
    const file = (await GzipLogFile.open(cut, original, guard))!;
    const out = Buffer.alloc(plain.length);
    let at = 0;
    for (;;) {
      const { bytesRead } = await file.read(out, at, 65_536, at);
      if (bytesRead === 0) break;
      at += bytesRead;
    }
    expect(at).toBeLessThan(plain.length);
    expect(out.subarray(0, at).equals(plain.subarray(0, at))).toBe(true);
    expect(file.failure).toContain("could not be decompressed");
    await file.close();
    expect(statSync(cut).size).toBeGreaterThan(0);
  });
});

describe("Tailer at a rename", () => {
  // The race a loaded host makes likely: the reader sees the end of the file, the writer appends its last lines
  // and renames the file, and only then does the reader look at the path.
  test("lines appended after the reader saw the end, just before the rename, are read before the next file", async () => {
    const dir = mkdtempSync(join(tmp, "rename-"));
    const path = join(dir, "c-json.log");
    const entry = (seq: number) => `${JSON.stringify({ log: `seq=${seq}\n`, stream: "stdout", time: "2024-01-02T03:04:05.000000001Z" })}\n`;
    writeFileSync(path, entry(1) + entry(2));
    const tailer = new Tailer(path, "c", undefined, 1024 * 1024, undefined, guard);
    const out: TailedRecord[] = [];
    while ((await tailer.read(out, Buffer.alloc(65_536))) > 0);
    expect(out.map((r) => r.merged.text)).toEqual(["seq=1", "seq=2"]);
    // The writer acts right after the reader's next read comes back empty, before the reader looks further.
    const file = (tailer as unknown as { file: { read: (...args: unknown[]) => Promise<{ bytesRead: number }> } }).file;
    const read = file.read.bind(file);
    let armed = true;
    file.read = async (...args: unknown[]) => {
      const result = await read(...args);
      if (result.bytesRead === 0 && armed) {
        armed = false;
        appendFileSync(path, entry(3));
        renameSync(path, `${path}.1`);
        writeFileSync(path, entry(4));
      }
      return result;
    };
    while ((await tailer.read(out, Buffer.alloc(65_536))) > 0);
    expect(armed).toBe(false);
    expect(out.map((r) => r.merged.text)).toEqual(["seq=1", "seq=2", "seq=3", "seq=4"]);
    await tailer.close();
  });
});
