/*
 * nagare test harness: librdkafka's mock Kafka cluster as a controllable process.
 *
 * Built and started by test/support/kafka.ts (startMockCluster); by hand:
 *   gcc -O2 -Wall -Wextra -o mock mock.c $(pkg-config --cflags --libs rdkafka)
 *   ./mock [--brokers N] [--topic NAME:PARTITIONS[:RF]]... [--debug]
 *
 * Brokers listen on 127.0.0.1 (random ports), ids 1..N. Once up, one line
 *   READY <bootstraps>            e.g. "READY 127.0.0.1:40001,127.0.0.1:40003"
 * is printed on stdout. Then each line read on stdin is a command answered with exactly one line,
 * "OK" or "ERR <message>":
 *
 *   ping                                          OK (liveness check)
 *   topic <name> <partitions> [<rf>]              create a topic (rf default: min(3, brokers))
 *   down <broker_id|-1>                           close the broker's connections, refuse new ones
 *   up <broker_id|-1>                             accept connections again (same port)
 *   errors <api> <count> <ERR>...                 the next <count> requests of <api> (cluster-wide) fail
 *                                                 with the given errors in order; the list is cycled
 *                                                 to fill <count> ("errors Produce 3 REQUEST_TIMED_OUT")
 *   broker-errors <broker_id> <api> <count> <ERR[:rtt_ms]>...
 *                                                 same, on one broker, each with an optional response
 *                                                 delay; broker stacks take precedence over cluster ones
 *   clear <api>                                   drop the remaining cluster-wide errors for <api>
 *   rtt <broker_id|-1> <ms>                       delay every response of the broker by <ms>
 *   leader <topic> <partition> <broker_id|-1>     move partition leadership (-1: leader-less; Metadata then
 *                                                 says leader -1 without an error)
 *   topic-error <topic> <ERR>                     error reported for the topic in Metadata responses
 *                                                 (NO_ERROR to clear)
 *   quit                                          destroy the cluster, answer OK, exit 0
 *
 * <api> is an ApiKey name (Produce, Fetch, ListOffsets, InitProducerId, ... case-insensitive) or number.
 * librdkafka 2.0.x serves (and injects errors into) Produce, Fetch, ListOffsets, OffsetCommit, OffsetFetch,
 * FindCoordinator, JoinGroup, Heartbeat, LeaveGroup, SyncGroup, ApiVersions, InitProducerId,
 * AddPartitionsToTxn, AddOffsetsToTxn, TxnOffsetCommit, EndTxn, and Metadata WITHOUT error injection (so
 * "errors Metadata ..." is refused there). Errors pushed for an API the mock does not serve never fire.
 * <ERR> is a librdkafka error name with or without the RD_KAFKA_RESP_ERR_ prefix (REQUEST_TIMED_OUT,
 * NOT_ENOUGH_REPLICAS, LEADER_NOT_AVAILABLE, MSG_SIZE_TOO_LARGE, NOT_LEADER_FOR_PARTITION,
 * UNKNOWN_TOPIC_OR_PART, _TRANSPORT, ...), a Kafka protocol name where it differs (MESSAGE_TOO_LARGE,
 * UNKNOWN_TOPIC_OR_PARTITION, NOT_LEADER_OR_FOLLOWER, CORRUPT_MESSAGE, ...), TRANSPORT/DISCONNECT
 * (= _TRANSPORT: the mock closes the connection when that request arrives) or a number.
 *
 * Delays (rtt, ERR:rtt_ms) hold a response back and every later response on the same connection behind it
 * (responses leave in order). "down" closes the broker's connections and closes its listener (new connects get
 * ECONNREFUSED); leadership does not move. "topic"/"leader" on an unknown topic create it.
 *
 * The process exits 0 after "quit", on EOF of stdin (the parent went away) and on SIGTERM, SIGINT or
 * SIGHUP, always destroying the cluster first. Diagnostics go to stderr (--debug adds librdkafka's
 * "mock" debug context: every request, log append, connection).
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#define MAX_LINE 65536
#define MAX_ARGS 256

static rd_kafka_t *rk;
static rd_kafka_mock_cluster_t *mcluster;
static int broker_cnt = 3;

/* ---------------------------------------------------------------- replies */

static int reply_ok(void) {
        fputs("OK\n", stdout);
        return fflush(stdout);
}

static int reply_err(const char *fmt, ...) {
        char msg[1024];
        va_list ap;
        char *p;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        for (p = msg; *p; p++) /* one line, always */
                if (*p == '\n' || *p == '\r')
                        *p = ' ';
        fprintf(stdout, "ERR %s\n", msg);
        return fflush(stdout);
}

static int reply_rd(rd_kafka_resp_err_t err) {
        if (!err)
                return reply_ok();
        return reply_err("%s: %s", rd_kafka_err2name(err), rd_kafka_err2str(err));
}

/* ---------------------------------------------------------------- lookups */

static const char *api_names[] = {
    "Produce", "Fetch", "ListOffsets", "Metadata", "LeaderAndIsr", "StopReplica", "UpdateMetadata",
    "ControlledShutdown", "OffsetCommit", "OffsetFetch", "FindCoordinator", "JoinGroup", "Heartbeat",
    "LeaveGroup", "SyncGroup", "DescribeGroups", "ListGroups", "SaslHandshake", "ApiVersions",
    "CreateTopics", "DeleteTopics", "DeleteRecords", "InitProducerId", "OffsetForLeaderEpoch",
    "AddPartitionsToTxn", "AddOffsetsToTxn", "EndTxn", "WriteTxnMarkers", "TxnOffsetCommit",
    "DescribeAcls", "CreateAcls", "DeleteAcls", "DescribeConfigs", "AlterConfigs",
    "AlterReplicaLogDirs", "DescribeLogDirs", "SaslAuthenticate", "CreatePartitions",
    "CreateDelegationToken", "RenewDelegationToken", "ExpireDelegationToken",
    "DescribeDelegationToken", "DeleteGroups", "ElectLeaders", "IncrementalAlterConfigs",
    "AlterPartitionReassignments", "ListPartitionReassignments", "OffsetDelete",
};
#define API_CNT ((int)(sizeof(api_names) / sizeof(api_names[0])))

static int parse_int(const char *s, long min, long max, long *out) {
        char *end;
        long v;
        errno = 0;
        v = strtol(s, &end, 10);
        if (errno || end == s || *end || v < min || v > max)
                return -1;
        *out = v;
        return 0;
}

/* Returns the ApiKey or -1. */
static int parse_api0(const char *s) {
        long v;
        int i;
        if (!parse_int(s, 0, 32767, &v))
                return (int)v;
        for (i = 0; i < API_CNT; i++)
                if (!strcasecmp(s, api_names[i]))
                        return i;
        if (!strcasecmp(s, "ApiVersion"))
                return 18;
        return -1;
}

/* Like parse_api0, but refuses what would silently never fire: librdkafka 2.0.x's Metadata handler does not
 * consume error stacks (checked: pushed errors stay queued forever). Returns the ApiKey, -1 unknown, -2 refused. */
static int parse_api(const char *s) {
        int api = parse_api0(s);
        if (api == 3 && rd_kafka_version() < 0x02010000)
                return -2;
        return api;
}

static int reply_bad_api(const char *s, int r) {
        if (r == -2)
                return reply_err("the mock (librdkafka %s) never injects errors into %s responses; use "
                                 "topic-error for Metadata",
                                 rd_kafka_version_str(), s);
        return reply_err("unknown ApiKey '%s'", s);
}

static const struct {
        const char *alias;
        const char *name;
} err_aliases[] = {
    {"MESSAGE_TOO_LARGE", "MSG_SIZE_TOO_LARGE"},
    {"UNKNOWN_TOPIC_OR_PARTITION", "UNKNOWN_TOPIC_OR_PART"},
    {"NOT_LEADER_OR_FOLLOWER", "NOT_LEADER_FOR_PARTITION"},
    {"CORRUPT_MESSAGE", "INVALID_MSG"},
    {"INVALID_FETCH_SIZE", "INVALID_MSG_SIZE"},
    {"INVALID_TOPIC_EXCEPTION", "TOPIC_EXCEPTION"},
    {"TRANSPORT", "_TRANSPORT"},
    {"DISCONNECT", "_TRANSPORT"},
    {"NONE", "NO_ERROR"},
};

/* Returns 0 and sets *errp, or -1 if unknown. */
static int parse_err(const char *in, rd_kafka_resp_err_t *errp) {
        const struct rd_kafka_err_desc *descs;
        size_t cnt, i;
        const char *s = in;
        long v;

        if (!parse_int(s, -200, 1000, &v)) {
                *errp = (rd_kafka_resp_err_t)v;
                return 0;
        }
        if (!strncasecmp(s, "RD_KAFKA_RESP_ERR_", 18))
                s += 18;
        for (i = 0; i < sizeof(err_aliases) / sizeof(err_aliases[0]); i++)
                if (!strcasecmp(s, err_aliases[i].alias)) {
                        s = err_aliases[i].name;
                        break;
                }
        if (!strcasecmp(s, "NO_ERROR")) {
                *errp = RD_KAFKA_RESP_ERR_NO_ERROR;
                return 0;
        }
        rd_kafka_get_err_descs(&descs, &cnt);
        for (i = 0; i < cnt; i++)
                if (descs[i].name && !strcasecmp(s, descs[i].name)) {
                        *errp = descs[i].code;
                        return 0;
                }
        return -1;
}

/* ---------------------------------------------------------------- commands */

#define NEED(n, usage)                                                                             \
        do {                                                                                       \
                if (argc < (n))                                                                    \
                        return reply_err("usage: %s", usage);                                      \
        } while (0)

static int cmd_topic(int argc, char **argv) {
        long parts, rf = broker_cnt < 3 ? broker_cnt : 3;
        NEED(3, "topic <name> <partitions> [<rf>]");
        if (parse_int(argv[2], 1, 100000, &parts))
                return reply_err("bad partition count '%s'", argv[2]);
        if (argc > 3 && parse_int(argv[3], 1, 1000, &rf))
                return reply_err("bad replication factor '%s'", argv[3]);
        return reply_rd(rd_kafka_mock_topic_create(mcluster, argv[1], (int)parts, (int)rf));
}

static int cmd_updown(int argc, char **argv, int up) {
        long id;
        NEED(2, up ? "up <broker_id|-1>" : "down <broker_id|-1>");
        if (parse_int(argv[1], -1, 1000000, &id))
                return reply_err("bad broker id '%s'", argv[1]);
        return reply_rd(up ? rd_kafka_mock_broker_set_up(mcluster, (int32_t)id)
                           : rd_kafka_mock_broker_set_down(mcluster, (int32_t)id));
}

static int cmd_errors(int argc, char **argv) {
        rd_kafka_resp_err_t errs[MAX_ARGS];
        rd_kafka_resp_err_t *fill;
        int api, nerr, i;
        long cnt;
        NEED(4, "errors <api> <count> <ERR>...");
        if ((api = parse_api(argv[1])) < 0)
                return reply_bad_api(argv[1], api);
        if (parse_int(argv[2], 1, 1000000, &cnt))
                return reply_err("bad count '%s'", argv[2]);
        nerr = argc - 3;
        if (nerr > cnt)
                return reply_err("%d errors given for count %ld", nerr, cnt);
        for (i = 0; i < nerr; i++)
                if (parse_err(argv[3 + i], &errs[i]))
                        return reply_err("unknown error name '%s'", argv[3 + i]);
        fill = malloc(sizeof(*fill) * (size_t)cnt);
        if (!fill)
                return reply_err("out of memory");
        for (i = 0; i < cnt; i++)
                fill[i] = errs[i % nerr];
        rd_kafka_mock_push_request_errors_array(mcluster, (int16_t)api, (size_t)cnt, fill);
        free(fill);
        return reply_ok();
}

static int cmd_broker_errors(int argc, char **argv) {
        rd_kafka_resp_err_t errs[MAX_ARGS];
        long rtts[MAX_ARGS];
        int api, nerr, i;
        long id, cnt;
        NEED(5, "broker-errors <broker_id> <api> <count> <ERR[:rtt_ms]>...");
        if (parse_int(argv[1], 0, 1000000, &id))
                return reply_err("bad broker id '%s'", argv[1]);
        if ((api = parse_api(argv[2])) < 0)
                return reply_bad_api(argv[2], api);
        if (parse_int(argv[3], 1, 1000000, &cnt))
                return reply_err("bad count '%s'", argv[3]);
        nerr = argc - 4;
        if (nerr > cnt)
                return reply_err("%d errors given for count %ld", nerr, cnt);
        for (i = 0; i < nerr; i++) {
                char *colon = strchr(argv[4 + i], ':');
                rtts[i]     = 0;
                if (colon) {
                        *colon = '\0';
                        if (parse_int(colon + 1, 0, 3600000, &rtts[i]))
                                return reply_err("bad rtt in '%s:%s'", argv[4 + i], colon + 1);
                }
                if (parse_err(argv[4 + i], &errs[i]))
                        return reply_err("unknown error name '%s'", argv[4 + i]);
        }
        /* One call per entry (the API is variadic); each call appends to the broker's stack. */
        for (i = 0; i < cnt; i++) {
                rd_kafka_resp_err_t r = rd_kafka_mock_broker_push_request_error_rtts(
                    mcluster, (int32_t)id, (int16_t)api, 1, errs[i % nerr], (int)rtts[i % nerr]);
                if (r)
                        return reply_rd(r);
        }
        return reply_ok();
}

static int cmd_clear(int argc, char **argv) {
        int api;
        NEED(2, "clear <api>");
        if ((api = parse_api0(argv[1])) < 0)
                return reply_bad_api(argv[1], api);
        rd_kafka_mock_clear_request_errors(mcluster, (int16_t)api);
        return reply_ok();
}

static int cmd_rtt(int argc, char **argv) {
        long id, ms;
        NEED(3, "rtt <broker_id|-1> <ms>");
        if (parse_int(argv[1], -1, 1000000, &id))
                return reply_err("bad broker id '%s'", argv[1]);
        if (parse_int(argv[2], 0, 3600000, &ms))
                return reply_err("bad rtt '%s'", argv[2]);
        return reply_rd(rd_kafka_mock_broker_set_rtt(mcluster, (int32_t)id, (int)ms));
}

static int cmd_leader(int argc, char **argv) {
        long part, id;
        NEED(4, "leader <topic> <partition> <broker_id|-1>");
        if (parse_int(argv[2], 0, 100000, &part))
                return reply_err("bad partition '%s'", argv[2]);
        if (parse_int(argv[3], -1, 1000000, &id))
                return reply_err("bad broker id '%s'", argv[3]);
        return reply_rd(
            rd_kafka_mock_partition_set_leader(mcluster, argv[1], (int32_t)part, (int32_t)id));
}

static int cmd_topic_error(int argc, char **argv) {
        rd_kafka_resp_err_t err;
        NEED(3, "topic-error <topic> <ERR>");
        if (parse_err(argv[2], &err))
                return reply_err("unknown error name '%s'", argv[2]);
        rd_kafka_mock_topic_set_error(mcluster, argv[1], err);
        return reply_ok();
}

/* Returns 1 if the program should exit, 0 to go on, -1 if stdout is gone. */
static int handle_line(char *line) {
        char *argv[MAX_ARGS];
        int argc = 0;
        char *save = NULL, *tok;
        int r;

        for (tok = strtok_r(line, " \t\r", &save); tok && argc < MAX_ARGS;
             tok = strtok_r(NULL, " \t\r", &save))
                argv[argc++] = tok;
        if (tok)
                return reply_err("too many arguments") ? -1 : 0;
        if (argc == 0)
                return reply_err("empty command") ? -1 : 0;

        if (!strcmp(argv[0], "quit"))
                return 1;
        else if (!strcmp(argv[0], "ping"))
                r = reply_ok();
        else if (!strcmp(argv[0], "topic"))
                r = cmd_topic(argc, argv);
        else if (!strcmp(argv[0], "down"))
                r = cmd_updown(argc, argv, 0);
        else if (!strcmp(argv[0], "up"))
                r = cmd_updown(argc, argv, 1);
        else if (!strcmp(argv[0], "errors"))
                r = cmd_errors(argc, argv);
        else if (!strcmp(argv[0], "broker-errors"))
                r = cmd_broker_errors(argc, argv);
        else if (!strcmp(argv[0], "clear"))
                r = cmd_clear(argc, argv);
        else if (!strcmp(argv[0], "rtt"))
                r = cmd_rtt(argc, argv);
        else if (!strcmp(argv[0], "leader"))
                r = cmd_leader(argc, argv);
        else if (!strcmp(argv[0], "topic-error"))
                r = cmd_topic_error(argc, argv);
        else
                r = reply_err("unknown command '%s'", argv[0]);
        return r ? -1 : 0;
}

/* ---------------------------------------------------------------- main */

static void usage(void) {
        fprintf(stderr, "usage: mock [--brokers N] [--topic NAME:PARTITIONS[:RF]]... [--debug]\n");
        exit(2);
}

static void shutdown_and_exit(int code, int say_ok) {
        /* Never hang on the way out: SIGALRM is not blocked, its default action ends the process. */
        alarm(10);
        rd_kafka_mock_cluster_destroy(mcluster);
        rd_kafka_destroy(rk);
        if (say_ok)
                reply_ok();
        exit(code);
}

int main(int argc, char **argv) {
        char errstr[512];
        rd_kafka_conf_t *conf;
        const char *topics[MAX_ARGS];
        int topic_cnt = 0, debug = 0, i, sfd;
        sigset_t mask;
        static char buf[MAX_LINE + 1];
        size_t used = 0;
        int discarding = 0; /* inside an over-long line */
        long v;

        for (i = 1; i < argc; i++) {
                if (!strcmp(argv[i], "--brokers") && i + 1 < argc) {
                        if (parse_int(argv[++i], 1, 100, &v))
                                usage();
                        broker_cnt = (int)v;
                } else if (!strcmp(argv[i], "--topic") && i + 1 < argc && topic_cnt < MAX_ARGS) {
                        topics[topic_cnt++] = argv[++i];
                } else if (!strcmp(argv[i], "--debug")) {
                        debug = 1;
                } else {
                        usage();
                }
        }

        /* Block the termination signals in every thread (librdkafka's threads inherit this mask)
         * and take them through a signalfd in the main loop. */
        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGHUP);
        if (pthread_sigmask(SIG_BLOCK, &mask, NULL) != 0 || (sfd = signalfd(-1, &mask, SFD_CLOEXEC)) < 0) {
                perror("mock: signalfd");
                return 1;
        }
        signal(SIGPIPE, SIG_IGN);

        conf = rd_kafka_conf_new();
        if (rd_kafka_conf_set(conf, "client.id", "nagare-kafka-mock", errstr, sizeof(errstr)) ||
            /* Level 4 hides the notice that the mock's own client has no bootstrap.servers. */
            rd_kafka_conf_set(conf, "log_level", debug ? "7" : "4", errstr, sizeof(errstr)) ||
            (debug && rd_kafka_conf_set(conf, "debug", "mock", errstr, sizeof(errstr)))) {
                fprintf(stderr, "mock: %s\n", errstr);
                return 1;
        }
        rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
        if (!rk) {
                fprintf(stderr, "mock: rd_kafka_new: %s\n", errstr);
                return 1;
        }
        mcluster = rd_kafka_mock_cluster_new(rk, broker_cnt);
        if (!mcluster) {
                fprintf(stderr, "mock: rd_kafka_mock_cluster_new failed\n");
                rd_kafka_destroy(rk);
                return 1;
        }

        for (i = 0; i < topic_cnt; i++) {
                char spec[512];
                char *name, *p1, *p2;
                long parts, rf = broker_cnt < 3 ? broker_cnt : 3;
                rd_kafka_resp_err_t err;
                snprintf(spec, sizeof(spec), "%s", topics[i]);
                name = spec;
                p1   = strchr(spec, ':');
                if (!p1) {
                        fprintf(stderr, "mock: bad --topic '%s' (NAME:PARTITIONS[:RF])\n", topics[i]);
                        shutdown_and_exit(2, 0);
                }
                *p1++ = '\0';
                if ((p2 = strchr(p1, ':')))
                        *p2++ = '\0';
                if (parse_int(p1, 1, 100000, &parts) || (p2 && parse_int(p2, 1, 1000, &rf))) {
                        fprintf(stderr, "mock: bad --topic '%s' (NAME:PARTITIONS[:RF])\n", topics[i]);
                        shutdown_and_exit(2, 0);
                }
                if ((err = rd_kafka_mock_topic_create(mcluster, name, (int)parts, (int)rf))) {
                        fprintf(stderr, "mock: creating topic %s: %s\n", name, rd_kafka_err2str(err));
                        shutdown_and_exit(1, 0);
                }
        }

        printf("READY %s\n", rd_kafka_mock_cluster_bootstraps(mcluster));
        if (fflush(stdout))
                shutdown_and_exit(1, 0);

        for (;;) {
                struct pollfd fds[2] = {{.fd = 0, .events = POLLIN}, {.fd = sfd, .events = POLLIN}};
                ssize_t r;
                char *nl;

                if (poll(fds, 2, -1) < 0) {
                        if (errno == EINTR)
                                continue;
                        perror("mock: poll");
                        shutdown_and_exit(1, 0);
                }
                if (fds[1].revents) {
                        struct signalfd_siginfo si;
                        if (read(sfd, &si, sizeof(si)) == (ssize_t)sizeof(si))
                                fprintf(stderr, "mock: signal %u, shutting down\n", si.ssi_signo);
                        shutdown_and_exit(0, 0);
                }
                if (!fds[0].revents)
                        continue;

                r = read(0, buf + used, MAX_LINE - used);
                if (r < 0) {
                        if (errno == EINTR || errno == EAGAIN)
                                continue;
                        shutdown_and_exit(0, 0);
                }
                if (r == 0) /* EOF: the parent closed stdin or went away */
                        shutdown_and_exit(0, 0);
                used += (size_t)r;

                while ((nl = memchr(buf, '\n', used))) {
                        size_t len = (size_t)(nl - buf);
                        int res = 0;
                        *nl = '\0';
                        if (discarding)
                                discarding = 0;
                        else
                                res = handle_line(buf);
                        memmove(buf, nl + 1, used - len - 1);
                        used -= len + 1;
                        if (res == 1)
                                shutdown_and_exit(0, 1);
                        if (res < 0) /* stdout is gone: nobody is listening any more */
                                shutdown_and_exit(0, 0);
                }
                if (used == MAX_LINE) {
                        used = 0;
                        if (discarding)
                                continue;
                        discarding = 1;
                        if (reply_err("command line longer than %d bytes", MAX_LINE))
                                shutdown_and_exit(0, 0);
                }
        }
}
