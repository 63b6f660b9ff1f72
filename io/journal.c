/* journal — JSON Lines resume journal, rewritten atomically on every append. */
#include "io/journal.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/err.h"
#include "io/fsutil.h"

struct journal {
    char *path;
    char *fingerprint;
    char **entries;
    int n, cap;
};

static journal *journal_new(const char *path, const char *fingerprint)
{
    journal *j = xcalloc(1, sizeof *j);
    j->path = xstrdup(path);
    j->fingerprint = xstrdup(fingerprint);
    return j;
}

static void push_entry(journal *j, char *text)
{
    if (j->n == j->cap) {
        j->cap = j->cap ? 2 * j->cap : 16;
        j->entries = xrealloc(j->entries, (size_t)j->cap * sizeof *j->entries);
    }
    j->entries[j->n++] = text;
}

static char *header_line(const journal *j)
{
    cJSON *h = cJSON_CreateObject();
    cJSON_AddStringToObject(h, "journal", "gptq-eora");
    cJSON_AddNumberToObject(h, "version", 1);
    cJSON_AddStringToObject(h, "fingerprint", j->fingerprint);
    char *s = cJSON_PrintUnformatted(h);
    cJSON_Delete(h);
    return s;
}

static int journal_flush(journal *j)
{
    char *head = header_line(j);
    size_t len = strlen(head) + 1;
    for (int i = 0; i < j->n; i++) len += strlen(j->entries[i]) + 1;
    char *buf = xmalloc(len + 1), *p = buf;
    p += sprintf(p, "%s\n", head);
    for (int i = 0; i < j->n; i++) p += sprintf(p, "%s\n", j->entries[i]);
    cJSON_free(head);
    int rc = fs_write_atomic(j->path, buf, (size_t)(p - buf));
    free(buf);
    return rc;
}

journal *journal_create(const char *path, const char *fingerprint)
{
    journal *j = journal_new(path, fingerprint);
    if (journal_flush(j) != 0) {
        journal_close(j);
        return NULL;
    }
    return j;
}

journal *journal_resume(const char *path, const char *fingerprint)
{
    if (!fs_exists(path)) {
        err_set("%s: no journal to resume from", path);
        return NULL;
    }
    size_t len;
    char *text = fs_read_file(path, &len);
    if (!text) return NULL;
    journal *j = journal_new(path, fingerprint);
    int line_no = 0, n_read = 0;
    /* blank lines are skipped, not treated as the end: later entries must not be dropped */
    for (char *line = text, *next; line; line = next) {
        next = strchr(line, '\n');
        if (next) *next++ = 0;
        line_no++;
        if (!*line || (line[0] == '\r' && !line[1])) continue;
        n_read++;
        cJSON *o = cJSON_Parse(line);
        if (!o || !cJSON_IsObject(o)) {
            cJSON_Delete(o);
            err_set("%s:%d: journal line is not a JSON object", path, line_no);
            goto fail;
        }
        if (n_read == 1) {
            const cJSON *fp = cJSON_GetObjectItemCaseSensitive(o, "fingerprint");
            const cJSON *kind = cJSON_GetObjectItemCaseSensitive(o, "journal");
            if (!cJSON_IsString(kind) || strcmp(kind->valuestring, "gptq-eora") != 0 || !cJSON_IsString(fp)) {
                cJSON_Delete(o);
                err_set("%s: not a gptq-eora journal", path);
                goto fail;
            }
            if (strcmp(fp->valuestring, fingerprint) != 0) {
                err_set("%s: journal belongs to another job or thread count (fingerprint %s, this run %s); "
                        "rerun without --resume",
                        path, fp->valuestring, fingerprint);
                cJSON_Delete(o);
                goto fail;
            }
        } else {
            char *s = cJSON_PrintUnformatted(o);
            push_entry(j, xstrdup(s));
            cJSON_free(s);
        }
        cJSON_Delete(o);
    }
    if (n_read == 0) {
        err_set("%s: empty journal", path);
        goto fail;
    }
    free(text);
    return j;
fail:
    free(text);
    journal_close(j);
    return NULL;
}

void journal_close(journal *j)
{
    if (!j) return;
    for (int i = 0; i < j->n; i++) free(j->entries[i]);
    free(j->entries);
    free(j->path);
    free(j->fingerprint);
    free(j);
}

int journal_count(const journal *j) { return j->n; }

const char *journal_entry(const journal *j, int i)
{
    return i >= 0 && i < j->n ? j->entries[i] : NULL;
}

int journal_append(journal *j, const char *entry_json)
{
    cJSON *o = cJSON_Parse(entry_json);
    if (!o || !cJSON_IsObject(o)) {
        cJSON_Delete(o);
        return err_set("%s: journal entry is not a JSON object", j->path);
    }
    char *s = cJSON_PrintUnformatted(o); /* one line, whatever the caller's formatting */
    cJSON_Delete(o);
    push_entry(j, xstrdup(s));
    cJSON_free(s);
    if (journal_flush(j) != 0) {
        free(j->entries[--j->n]);
        return -1;
    }
    return 0;
}

int journal_remove(journal *j)
{
    if (unlink(j->path) != 0 && fs_exists(j->path)) return err_set("%s: cannot remove journal", j->path);
    return fs_fsync_dir(j->path);
}
