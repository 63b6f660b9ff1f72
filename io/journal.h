/* journal — the resume journal of a quantization run.
 *
 * A JSON Lines file: a header line {"journal":"gptq-eora","version":1,"fingerprint":F}
 * then one line per finished unit of work (a layer), each a JSON object chosen by the
 * caller. Every append rewrites the file under a temporary name, fsyncs and renames, so
 * after a crash the journal holds exactly the entries whose append returned. The
 * fingerprint identifies the job (job file, model, thread count, version): resuming with
 * a different one is an error rather than a silently mixed output. */
#ifndef IO_JOURNAL_H
#define IO_JOURNAL_H

typedef struct journal journal;

/* Start a new, empty journal at path (replacing any old one, durably). */
journal *journal_create(const char *path, const char *fingerprint);
/* Open an existing journal for resuming. Error when missing, unreadable, or its
 * fingerprint differs (the message names both). */
journal *journal_resume(const char *path, const char *fingerprint);
void journal_close(journal *j);

int journal_count(const journal *j);
/* Entry i as JSON text (owned by the journal). */
const char *journal_entry(const journal *j, int i);
/* Append one entry (compact JSON object text) durably. */
int journal_append(journal *j, const char *entry_json);
/* Remove the journal file (after the run has completed). */
int journal_remove(journal *j);

#endif
