/**
 * Exit statuses of the command line, from BSD sysexits.h, so that scripts and supervisors can tell a mistake to
 * fix (the command line, the config) from a condition that may heal (a destination down) and from a crash.
 */
/** A fatal runtime error. */
export const EX_FAILURE = 1;
/** The command line is wrong: an unknown command or option, a missing argument. */
export const EX_USAGE = 64;
/** The environment is not ready and may heal: a destination unreachable, a journal or directory not readable. */
export const EX_UNAVAILABLE = 69;
/** The config is wrong (or a saved file needs the operator's decision): retrying cannot help. */
export const EX_CONFIG = 78;
