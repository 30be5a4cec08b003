/* SPDX-License-Identifier: Apache-2.0
 * test_list_attention.h: CPU attention tiling entries of the unit-test registry (see test_list.h). */
TEST_ENTRY(cpu_attention_tiled_kernel_matches_single_rows, 120, TIER_DEFAULT)
TEST_ENTRY(cpu_attention_tiled_backend_matches_single_rows, 120, TIER_DEFAULT)
