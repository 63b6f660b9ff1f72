/* slurm — the sbatch script of a multi-node quantization run (`gptq-eora slurm`).
 *
 * One MPI rank per task (default one per node), OMP_NUM_THREADS = cpus-per-task (also passed
 * as --threads, which the resume journal's fingerprint includes), OMP_WAIT_POLICY=passive,
 * launched with srun (Slurm's PMI) or mpirun. The job is requeueable: when Slurm restarts it
 * (SLURM_RESTART_COUNT > 0) the script adds --resume, and the run continues from the last
 * layer in its journal (docs/mpi.md). */
#ifndef TOOLS_SLURM_H
#define TOOLS_SLURM_H

typedef struct {
    const char *job_path;   /* JOB.yaml (made absolute by the caller) */
    const char *binary;     /* gptq-eora to run (absolute) */
    const char *job_name;   /* #SBATCH --job-name; NULL: "gptq-eora" */
    int nodes;              /* >= 1 */
    int ntasks_per_node;    /* >= 1 */
    int cpus_per_task;      /* >= 1 */
    const char *time;       /* [D-]HH:MM:SS or NULL */
    const char *partition;  /* NULL: cluster default */
    const char *mem;        /* per node, e.g. 200G; NULL: cluster default */
    const char *launcher;   /* "srun" (default) or "mpirun" */
} slurm_opts;

void slurm_opts_default(slurm_opts *o);
/* Checks the options (err set naming the bad one, -1). */
int slurm_check(const slurm_opts *o);
/* The script (malloc'd), or NULL + err when the options are invalid. */
char *slurm_script(const slurm_opts *o);

#endif
