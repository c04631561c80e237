"""Pipeline steps as library functions: dataset directories in, dataset directories out.

DVC stages and KFP components both call these (through ``vlthinker step ...``); a step never imports
another step.
"""
