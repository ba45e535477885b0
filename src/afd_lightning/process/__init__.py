"""The process around a job: the CLI wrapper, torch threads, silenced noise and the advertorch import shim."""
