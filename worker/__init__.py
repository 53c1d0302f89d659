"""The synthesis side: engines, audio encoding, the job runner and worker start-up."""
