-- Shared by every script that can end a job: tell the API processes' waiters (api.waiters)
-- that it ended. The channel is tasks.keys.JOB_ENDED_CHANNEL (a test checks the spelling);
-- a waiter that misses the message (not yet subscribed) reads the record itself.
local function announce_end(job_key)
  redis.call('PUBLISH', 'ttsfleet:jobs:ended', string.match(job_key, '[^:]+$'))
end
