"""`warden bench`: the figures the issues ask for, measured for real on this machine.

Each benchmark reports medians (and p99 where latency matters) and, in the
same run, the baseline it is compared with, because shared machines are noisy.
"""
