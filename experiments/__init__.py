"""
Experiments on the centering variants: which runs to do (plan), doing them on this machine or on
a Slurm cluster (sweep, local, slurm), what they leave (records), and the command-line style of
the scripts that drive them (cli). The statistics and reports built on the records live beside
them (stats, tuning, report, plots).
"""
