/**
 * SASL authentication of a new broker connection (KIP-43, KIP-152): SaslHandshake names the mechanism, then
 * SaslAuthenticate carries the mechanism's messages.
 *
 *   SaslHandshake v1     Request  => mechanism:STRING
 *                        Response => error_code:INT16 mechanisms:[STRING]
 *   SaslAuthenticate v0-1 Request => auth_bytes:BYTES
 *                        Response => error_code:INT16 error_message:NULLABLE_STRING auth_bytes:BYTES
 *                                    session_lifetime_ms:INT64 (v1+)
 *   BYTES = INT32 length + bytes
 *
 * PLAIN (RFC 4616): one message, "" NUL username NUL password.
 * SCRAM-SHA-256/512 (RFC 5802, RFC 7677), without channel binding:
 *   client-first = "n,," "n=" saslname "," "r=" client-nonce
 *   server-first = "r=" client-nonce server-nonce "," "s=" base64(salt) "," "i=" iterations
 *   client-final = "c=biws" "," "r=" nonce "," "p=" base64(ClientKey XOR HMAC(H(ClientKey), AuthMessage))
 *   server-final = "v=" base64(HMAC(ServerKey, AuthMessage))   — checked: the broker must know the password too
 *   SaltedPassword = PBKDF2(HMAC-H, password, salt, iterations); ClientKey = HMAC(SaltedPassword, "Client Key");
 *   ServerKey = HMAC(SaltedPassword, "Server Key"); AuthMessage = client-first-bare "," server-first "," client-final-without-proof
 * A session that expires (connections.max.reauth.ms) is closed by the broker; the next request reconnects.
 */
import { createHash, createHmac, pbkdf2, randomBytes, timingSafeEqual } from "node:crypto";
import { promisify } from "node:util";
import type { BrokerConnection } from "./broker.ts";
import { KafkaFailure, classifyKafkaCode, classifyKafkaName } from "./errors.ts";
import { API_SASL_AUTHENTICATE, API_SASL_HANDSHAKE, Reader, RequestWriter } from "./protocol.ts";

export type SaslMechanism = "PLAIN" | "SCRAM-SHA-256" | "SCRAM-SHA-512";

export interface SaslCredentials {
  mechanism: SaslMechanism;
  username: string;
  password: string;
}

const pbkdf2Async = promisify(pbkdf2);

export async function authenticate(broker: BrokerConnection, credentials: SaslCredentials): Promise<void> {
  const version = broker.version(API_SASL_AUTHENTICATE);
  if (version === undefined || broker.version(API_SASL_HANDSHAKE) === undefined) throw new KafkaFailure(classifyKafkaName("ILLEGAL_SASL_STATE"), `${broker.name} does not offer SASL authentication`);
  const handshake = await broker.request(API_SASL_HANDSHAKE, 1, new RequestWriter().nullableString(credentials.mechanism).done(), (r) => ({ errorCode: r.int16(), mechanisms: r.array((x) => x.string()) }));
  if (handshake.errorCode !== 0) {
    throw new KafkaFailure(classifyKafkaCode(handshake.errorCode), `${broker.name} does not take SASL ${credentials.mechanism} (it offers ${handshake.mechanisms.join(", ") || "none"})`);
  }
  const exchange = async (message: Buffer): Promise<Buffer> => {
    const answer = await broker.request(API_SASL_AUTHENTICATE, version, new RequestWriter().int32(message.length).bytes(message).done(), (r) => decodeAuthenticate(version, r));
    if (answer.errorCode !== 0) {
      const classified = classifyKafkaCode(answer.errorCode);
      throw new KafkaFailure(classified, `${broker.name} refused the SASL ${credentials.mechanism} login of ${credentials.username} (${classified.name}${answer.message ? `: ${answer.message}` : ""})`);
    }
    return answer.bytes;
  };
  if (credentials.mechanism === "PLAIN") await exchange(Buffer.from(`\u0000${credentials.username}\u0000${credentials.password}`));
  else await scram(credentials, credentials.mechanism === "SCRAM-SHA-256" ? "sha256" : "sha512", exchange, broker.name);
}

function decodeAuthenticate(version: number, r: Reader): { errorCode: number; message: string | null; bytes: Buffer } {
  const errorCode = r.int16();
  const message = r.nullableString();
  const bytes = r.bytes();
  if (version >= 1) r.int64();
  return { errorCode, message, bytes };
}

async function scram(credentials: SaslCredentials, hash: "sha256" | "sha512", exchange: (m: Buffer) => Promise<Buffer>, broker: string): Promise<void> {
  const clientNonce = randomBytes(24).toString("base64");
  const clientFirstBare = `n=${saslName(credentials.username)},r=${clientNonce}`;
  const serverFirst = (await exchange(Buffer.from(`n,,${clientFirstBare}`))).toString("utf8");
  const attributes = parseAttributes(serverFirst);
  const nonce = attributes.get("r") ?? "";
  const salt = Buffer.from(attributes.get("s") ?? "", "base64");
  const iterations = Number(attributes.get("i"));
  if (!nonce.startsWith(clientNonce) || nonce.length === clientNonce.length || salt.length === 0 || !Number.isInteger(iterations) || iterations < 1) {
    throw refused(`${broker} answered the SCRAM client-first message with something else: ${serverFirst.slice(0, 200)}`);
  }
  const saltedPassword = await pbkdf2Async(credentials.password, salt, iterations, hash === "sha256" ? 32 : 64, hash);
  const clientKey = hmac(hash, saltedPassword, "Client Key");
  const storedKey = createHash(hash).update(clientKey).digest();
  const clientFinalWithoutProof = `c=biws,r=${nonce}`;
  const authMessage = `${clientFirstBare},${serverFirst},${clientFinalWithoutProof}`;
  const signature = hmac(hash, storedKey, authMessage);
  const proof = Buffer.alloc(clientKey.length);
  for (let i = 0; i < proof.length; i++) proof[i] = clientKey[i]! ^ signature[i]!;
  const serverFinal = parseAttributes((await exchange(Buffer.from(`${clientFinalWithoutProof},p=${proof.toString("base64")}`))).toString("utf8"));
  const error = serverFinal.get("e");
  if (error !== undefined) throw refused(`${broker} refused the SCRAM login of ${credentials.username}: ${error}`);
  const expected = hmac(hash, hmac(hash, saltedPassword, "Server Key"), authMessage);
  const given = Buffer.from(serverFinal.get("v") ?? "", "base64");
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) throw refused(`${broker} could not prove that it knows the password of ${credentials.username} (SCRAM server signature mismatch)`);
}

function refused(message: string): KafkaFailure {
  return new KafkaFailure(classifyKafkaName("SASL_AUTHENTICATION_FAILED"), message);
}

function hmac(hash: string, key: Buffer, text: string): Buffer {
  return createHmac(hash, key).update(text).digest();
}

/** RFC 5802 saslname: "=" and "," escaped. */
function saslName(name: string): string {
  return name.replace(/=/g, "=3D").replace(/,/g, "=2C");
}

function parseAttributes(message: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const part of message.split(",")) {
    const eq = part.indexOf("=");
    if (eq > 0) out.set(part.slice(0, eq), part.slice(eq + 1));
  }
  return out;
}
