/* train_outdir.h — neox-train's output directory: the names of its files,
 * creating it, clearing what a killed or earlier run left, and the
 * tokenizer files a checkpoint needs beside the model. */
#ifndef TUNEPIPE_TRAIN_OUTDIR_H
#define TUNEPIPE_TRAIN_OUTDIR_H

#define TRAIN_STATE_FILE "training_state.safetensors"
#define TRAIN_BEST_FILE "best.safetensors"

/* "dir/name", malloc'd. */
char *path_join(const char *dir, const char *name);
int file_exists(const char *path);
/* mkdir -p; 0 with the reason in err on failure. */
int make_dirs(const char *dir, char *err, int errlen);

/* Removes the temporary files of ours a killed run left (atomic_open
 * names them NAME.tmp.PID). */
void outdir_remove_stale_temporaries(const char *dir);
/* Removes the state and best model of an earlier run, which a new run
 * must not resume or keep. */
void outdir_forget_run(const char *dir);
/* Copies tokenizer.json into out: tokenizer when given, else model_dir's
 * (with its tokenizer_config.json and special_tokens_map.json), else the
 * shipped one. model_dir may be NULL. */
int outdir_copy_tokenizer(const char *out, const char *model_dir, const char *tokenizer, char *err, int errlen);

#endif
