/* SPDX-License-Identifier: Apache-2.0
 *
 * test_list.h: the one registry of unit tests. Each line is
 *   TEST_ENTRY(name, timeout_seconds, TIER_DEFAULT | TIER_FULL)
 * and names a TEST(name) defined in some tests/unit/test_*.c. CMake reads
 * these lines (here and in the per-module lists included below) to register
 * one CTest per test. Keep entries one per line, starting the line.
 */

/* gguf */
TEST_ENTRY(gguf_parses_default_model, 30, TIER_DEFAULT)
TEST_ENTRY(gguf_rejects_corrupt_corpus, 60, TIER_DEFAULT)
TEST_ENTRY(gguf_rejects_every_truncation, 120, TIER_DEFAULT)

/* quant */
TEST_ENTRY(quant_f16_conversion_exact, 30, TIER_DEFAULT)
TEST_ENTRY(quant_roundtrip_all_types, 30, TIER_DEFAULT)
TEST_ENTRY(quant_dequant_matches_gguf_python, 60, TIER_DEFAULT)

/* cpu backend kernels */
TEST_ENTRY(cpu_matmul_all_types_vs_reference, 120, TIER_DEFAULT)
TEST_ENTRY(cpu_ffn_swiglu_vs_reference, 60, TIER_DEFAULT)
TEST_ENTRY(cpu_repack_x8_roundtrip, 30, TIER_DEFAULT)
TEST_ENTRY(cpu_quant_act_avx2_matches_scalar, 30, TIER_DEFAULT)
TEST_ENTRY(cpu_attention_vs_reference, 60, TIER_DEFAULT)
TEST_ENTRY(cpu_pool_runs_every_worker, 30, TIER_DEFAULT)

/* config */
TEST_ENTRY(config_examples_load, 30, TIER_DEFAULT)
TEST_ENTRY(config_precedence_and_errors, 30, TIER_DEFAULT)
TEST_ENTRY(config_sagemaker_environment, 30, TIER_DEFAULT)

/* model */
TEST_ENTRY(model_rejects_bad_hparams, 30, TIER_DEFAULT)
TEST_ENTRY(model_batch_split_invariance, 120, TIER_DEFAULT)
TEST_ENTRY(model_logits_match_llama_cpp, 300, TIER_DEFAULT)
TEST_ENTRY(model_q8_0_kv_cache_stays_close, 300, TIER_DEFAULT)
TEST_ENTRY(model_greedy_matches_llama_cpp, 300, TIER_DEFAULT)
TEST_ENTRY(model_dummy_preset_runs, 60, TIER_DEFAULT)


/* engine */
TEST_ENTRY(kv_blocks_refcount_and_prefix_cache, 30, TIER_DEFAULT)
TEST_ENTRY(kv_blocks_random_operations_keep_invariants, 60, TIER_DEFAULT)
TEST_ENTRY(stop_strings_across_pieces, 30, TIER_DEFAULT)
TEST_ENTRY(sampler_truncation_and_penalties, 30, TIER_DEFAULT)
TEST_ENTRY(engine_device_memory_plan_sizes_the_pool, 120, TIER_DEFAULT)
TEST_ENTRY(engine_padded_decode_steps_keep_outputs, 120, TIER_DEFAULT)
TEST_ENTRY(engine_q8_0_kv_cache, 120, TIER_DEFAULT)
TEST_ENTRY(engine_batch_invariance_with_preemption, 300, TIER_DEFAULT)
TEST_ENTRY(engine_prefix_cache_reuses_shared_prefix, 120, TIER_DEFAULT)
TEST_ENTRY(engine_seeded_sampling_batch_independent, 120, TIER_DEFAULT)
TEST_ENTRY(engine_sampling_threads_same_output, 120, TIER_DEFAULT)
TEST_ENTRY(engine_stop_strings_across_tokens, 120, TIER_DEFAULT)
TEST_ENTRY(engine_n_choices_share_prompt_blocks, 120, TIER_DEFAULT)
TEST_ENTRY(engine_cancel_queue_full_and_refusals, 120, TIER_DEFAULT)
TEST_ENTRY(engine_stress_random, 600, TIER_DEFAULT)
TEST_ENTRY(engine_stress_random_long, 1800, TIER_FULL)

#include "test_list_tokenizer.h"
#include "test_list_jinja.h"
#include "test_list_attention.h"

/* cuda backend planning (test_list_cuda.h) */
#include "test_list_cuda.h"
