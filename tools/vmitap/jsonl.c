// SPDX-License-Identifier: MIT
/* vmitap's JSON Lines output through json-glib: one object per line, each
 * with a "type". Strings are made valid UTF-8 first (every byte that is
 * not part of a valid UTF-8 sequence becomes U+FFFD), so any symbol name
 * yields valid JSON. The schema: docs/vmitap-jsonl.schema.json. */
#include <inttypes.h>
#include <stdio.h>

#include <json-glib/json-glib.h>

#include "tools/vmitap/cli.h"

jl_obj *jl_begin(const char *type)
{
    JsonBuilder *b = json_builder_new();
    json_builder_begin_object(b);
    jl_str(b, "type", type);
    return b;
}

void jl_str(jl_obj *b, const char *key, const char *val)
{
    json_builder_set_member_name(b, key);
    if (!val) {
        json_builder_add_null_value(b);
        return;
    }
    char *valid = g_utf8_make_valid(val, -1);
    json_builder_add_string_value(b, valid);
    g_free(valid);
}

void jl_u64(jl_obj *b, const char *key, uint64_t val)
{
    /* json-glib's integers are gint64; counters never come near 2^63 */
    json_builder_set_member_name(b, key);
    json_builder_add_int_value(b, val > INT64_MAX ? INT64_MAX : (gint64)val);
}

void jl_int(jl_obj *b, const char *key, int64_t val)
{
    json_builder_set_member_name(b, key);
    json_builder_add_int_value(b, val);
}

void jl_double(jl_obj *b, const char *key, double val)
{
    json_builder_set_member_name(b, key);
    json_builder_add_double_value(b, val);
}

void jl_bool(jl_obj *b, const char *key, bool val)
{
    json_builder_set_member_name(b, key);
    json_builder_add_boolean_value(b, val);
}

void jl_null(jl_obj *b, const char *key)
{
    json_builder_set_member_name(b, key);
    json_builder_add_null_value(b);
}

void jl_hex(jl_obj *b, const char *key, uint64_t val)
{
    char s[24];
    snprintf(s, sizeof s, "0x%" PRIx64, val);
    jl_str(b, key, s);
}

void jl_begin_member_object(jl_obj *b, const char *key)
{
    json_builder_set_member_name(b, key);
    json_builder_begin_object(b);
}

void jl_end_member_object(jl_obj *b) { json_builder_end_object(b); }

void jl_end(jl_obj *b, FILE *f)
{
    json_builder_end_object(b);
    JsonNode *root = json_builder_get_root(b);
    JsonGenerator *g = json_generator_new();
    json_generator_set_root(g, root);
    gchar *text = json_generator_to_data(g, NULL);
    fputs(text, f);
    fputc('\n', f);
    g_free(text);
    g_object_unref(g);
    json_node_unref(root);
    g_object_unref(b);
}
