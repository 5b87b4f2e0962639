/** Target trees for install.sh --root: the account files of a minimal Debian system (useradd --prefix edits them). */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";

export function writeOsTree(root: string): string {
  mkdirSync(join(root, "etc"), { recursive: true });
  writeFileSync(join(root, "etc/passwd"), "root:x:0:0:root:/root:/bin/bash\n");
  writeFileSync(join(root, "etc/group"), "root:x:0:\nadm:x:4:\nsystemd-journal:x:101:\n");
  writeFileSync(join(root, "etc/shadow"), "root:*:19000:0:99999:7:::\n", { mode: 0o640 });
  writeFileSync(join(root, "etc/gshadow"), "root:*::\nadm:*::\nsystemd-journal:!::\n", { mode: 0o640 });
  return root;
}
