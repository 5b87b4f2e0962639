/**
 * One connection to one broker. The transport — TCP or TLS, SASL (PLAIN, SCRAM-SHA-256/512) with
 * re-authentication, request framing, correlation ids and a timeout per request — is @platformatic/kafka's
 * Connection; the requests and their decoding are ours (protocol.ts). Right after connecting, ApiVersions
 * tells which version of each API this broker speaks.
 */
import { isIP } from "node:net";
import { Connection, Writer, type Reader as LibraryReader } from "@platformatic/kafka";
import type { TlsClientOptions } from "../../config/tls.ts";
import { NagareError } from "../../core/errors.ts";
import { API_API_VERSIONS, decodeApiVersions, pickVersion, Reader, type ApiRanges } from "./protocol.ts";
import { kafkaErrorName } from "./errors.ts";

export interface BrokerOptions {
  clientId: string;
  connectTimeoutMs: number;
  requestTimeoutMs: number;
  tls: TlsClientOptions | undefined;
  sasl: { mechanism: "PLAIN" | "SCRAM-SHA-256" | "SCRAM-SHA-512"; username: string; password: string } | undefined;
}

export class BrokerConnection {
  private versions: ApiRanges = new Map();
  private failure: Error | undefined;

  private constructor(
    readonly name: string,
    private readonly connection: Connection,
  ) {}

  static async open(host: string, port: number, options: BrokerOptions): Promise<BrokerConnection> {
    const connection = new Connection(options.clientId, {
      connectTimeout: options.connectTimeoutMs,
      requestTimeout: options.requestTimeoutMs,
      // Our own per-partition window decides what is in flight; the connection only must not hold it back.
      maxInflights: 64,
      tls: options.tls,
      // SNI takes a name, not an address; the certificate is checked against the host either way.
      tlsServerName: options.tls?.servername ?? (options.tls !== undefined && isIP(host) === 0 ? host : undefined),
      sasl: options.sasl,
    });
    const broker = new BrokerConnection(`${host}:${port}`, connection);
    // The library reports socket errors as events; without a listener an 'error' event would throw.
    connection.on("error", (err: Error) => (broker.failure ??= err));
    connection.on("close", () => (broker.failure ??= new Error("the connection was closed")));
    try {
      await connection.connect(host, port);
      const { errorCode, ranges } = await broker.request(API_API_VERSIONS, 0, [], decodeApiVersions);
      if (errorCode !== 0) throw new NagareError("SINK_UNAVAILABLE", `${broker.name} answered ApiVersions with ${kafkaErrorName(errorCode)}`, { retryable: true });
      broker.versions = ranges;
      return broker;
    } catch (err) {
      void broker.close();
      throw err;
    }
  }

  get closed(): boolean {
    return this.failure !== undefined || !this.connection.isConnected();
  }

  /** The version of `api` to use with this broker; undefined when there is none in common. */
  version(api: number): number | undefined {
    return pickVersion(api, this.versions);
  }

  /**
   * Sends one request (body buffers are sent as they are, after the header) and decodes its response. Rejects
   * with the transport's error (timeouts close the connection, failing every request in flight on it).
   */
  request<T>(api: number, version: number, body: Buffer[], decode: (r: Reader) => T): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const payload = () => {
        const w = Writer.create();
        for (const part of body) w.append(part);
        return w;
      };
      const parse = (_correlationId: number, _api: number, _version: number, reader: LibraryReader): T => {
        return decode(new Reader(reader.buffer.slice(reader.position, reader.buffer.length)));
      };
      this.connection.send(api, version, payload, parse, false, false, (err: Error | null, value: T | undefined) => (err ? reject(err) : resolve(value as T)));
    });
  }

  close(): Promise<void> {
    this.failure ??= new Error("closed by the agent");
    return this.connection.close().catch(() => undefined);
  }
}
