"""Files we read back and did not necessarily write: checkpoints, stored configs checked against our schema, export folders."""
