"""The submit API process (`ttsfleet api`): validates a job, admits it into Redis in one
script (intake), and answers status, audio and listing requests. Imports no torch."""
