/**
 * Credentials written into a URL (`http://user:password@host`, e.g. a journal gateway behind basic auth) must
 * not leave the process: every log line, `validate` line, /health body and metric label passes text through
 * here, and the password becomes `***`. The user name stays, so an operator can still tell which account is
 * meant.
 *
 *   url-with-password = scheme "://" user ":" password "@" host ...
 *   scheme            = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )
 *
 * The password runs to the last "@" before the end of the authority (white space, "/", "?", "#"), as URL
 * parsers read it, so a password with an unescaped "@" is hidden whole. Quotes and backslashes end it too: a
 * URL quoted in a message must not swallow the text after it.
 */

const CREDENTIALS = /\b([a-zA-Z][a-zA-Z0-9+.-]*:\/\/[^\s:/?#@"'\\]*):[^\s/?#"'\\]*@/g;

/** `text` with the password of every URL in it replaced by `***`. */
export function redact(text: string): string {
  // Without "@" there are no credentials; most text pays for this one scan only.
  return text.includes("@") ? text.replace(CREDENTIALS, "$1:***@") : text;
}

/** A JSON.stringify replacer that redacts every string value (Errors become their redacted message). */
export function redactingReplacer(_key: string, value: unknown): unknown {
  if (typeof value === "string") return redact(value);
  if (typeof value === "bigint") return value.toString();
  if (value instanceof Error) return redact(value.message);
  return value;
}
