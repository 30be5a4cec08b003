/* SPDX-License-Identifier: Apache-2.0
 *
 * main.c: the inferd executable: dispatches to a subcommand. The only place
 * allowed to decide the process exit status.
 *
 *   inferd generate   run a prompt through the model, stream the text
 *   inferd bench      offline prefill/decode speed and memory
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
               "usage: inferd <command> [options]\n\n"
               "commands:\n"
               "  generate   generate text from --prompt and stream it to stdout\n"
               "  bench      measure prefill/decode tokens/s and peak memory\n"
               "  version    print the version\n\n"
               "`inferd <command> --help` lists a command's options.\n",
            INFERD_VERSION);
}

int main(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 1 : 0;
    }
    if (strcmp(argv[1], "generate") == 0) return cmd_generate(argc, argv);
    if (strcmp(argv[1], "bench") == 0) return cmd_bench(argc, argv);
    if (strcmp(argv[1], "version") == 0 || strcmp(argv[1], "--version") == 0) {
        printf("inferd %s\n", INFERD_VERSION);
        return 0;
    }
    fprintf(stderr, "inferd: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 1;
}
