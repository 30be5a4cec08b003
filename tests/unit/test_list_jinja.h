/* SPDX-License-Identifier: Apache-2.0
 * test_list_jinja.h: chat-template entries of the unit-test registry (see test_list.h). */
TEST_ENTRY(chat_template_matches_jinja2_corpus, 60, TIER_DEFAULT)
TEST_ENTRY(chat_template_language_matches_jinja2, 60, TIER_DEFAULT)
TEST_ENTRY(chat_template_bad_templates_fail_cleanly, 60, TIER_DEFAULT)
TEST_ENTRY(chat_template_mutations_never_crash, 60, TIER_DEFAULT)
TEST_ENTRY(chat_template_api_conventions, 30, TIER_DEFAULT)
TEST_ENTRY(chat_template_concurrent_renders, 60, TIER_DEFAULT)
TEST_ENTRY(chat_template_render_speed, 60, TIER_DEFAULT)
