/* SPDX-License-Identifier: Apache-2.0
 * test_list_cuda.h: CUDA backend host-side planning entries of the unit-test registry (see test_list.h).
 * They run in every build: the planning code is plain C (src/backend/cuda/cuda_plan.c). */
TEST_ENTRY(cuda_plan_gemv_threshold_and_types, 10, TIER_DEFAULT)
TEST_ENTRY(cuda_plan_attention_decode_splits, 10, TIER_DEFAULT)
TEST_ENTRY(cuda_attention_split_ranges_cover_context, 10, TIER_DEFAULT)
TEST_ENTRY(cuda_rope_pairs_cover_each_head_element_once, 10, TIER_DEFAULT)
TEST_ENTRY(cuda_plan_attention_prefill_tiles, 10, TIER_DEFAULT)
TEST_ENTRY(cuda_plan_graph_buckets_cover_batches, 10, TIER_DEFAULT)
TEST_ENTRY(cuda_plan_graph_decode_attention_plan, 10, TIER_DEFAULT)
TEST_ENTRY(cuda_plan_graph_inputs_padding, 10, TIER_DEFAULT)
TEST_ENTRY(cuda_plan_graph_padding_is_inert_on_cpu, 60, TIER_DEFAULT)
TEST_ENTRY(cuda_plan_memory_fits_and_refuses, 10, TIER_DEFAULT)
TEST_ENTRY(cuda_backend_unavailable_or_reports, 30, TIER_DEFAULT)
