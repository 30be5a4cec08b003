/* SPDX-License-Identifier: Apache-2.0
 *
 * main.c: the inferd executable: dispatches to a subcommand. The only place
 * allowed to decide the process exit status.
 *
 *   inferd [serve]    the OpenAI-compatible HTTP daemon (the default command)
 *   inferd generate   run a prompt through the model, stream the text
 *   inferd bench      offline speed, memory and serving throughput
 *
 * Layer: top.
 */
#include "cli/cli_common.h"

#include <stdio.h>
#include <string.h>

#define INFERD_VERSION "0.1.0"

static void usage(FILE *f)
{
    fprintf(f, "inferd %s: LLM inference on GGUF models\n\n"
               "usage: inferd [command] [options]\n\n"
               "commands:\n"
               "  serve      the OpenAI-compatible HTTP server (the default: `inferd [options]`)\n"
               "  generate   generate text from --prompt and stream it to stdout\n"
               "  bench      measure prefill/decode tokens/s, peak memory, serving throughput\n"
               "  version    print the version\n\n"
               "`inferd <command> --help` lists a command's options; `inferd --help` lists serve's.\n",
            INFERD_VERSION);
}

int main(int argc, char **argv)
{
    if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0)) {
        usage(stdout);
        putchar('\n');
        char *help[] = { argv[0], "--help", NULL };
        return cmd_serve(2, help, 1);
    }
    if (argc >= 2 && (strcmp(argv[1], "version") == 0 || strcmp(argv[1], "--version") == 0)) {
        printf("inferd %s\n", INFERD_VERSION);
        return 0;
    }
    if (argc < 2 || argv[1][0] == '-') return cmd_serve(argc, argv, 1); /* no command: serve */
    if (strcmp(argv[1], "serve") == 0) return cmd_serve(argc, argv, 2);
    if (strcmp(argv[1], "generate") == 0) return cmd_generate(argc, argv);
    if (strcmp(argv[1], "bench") == 0) return cmd_bench(argc, argv);
    fprintf(stderr, "inferd: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 1;
}
