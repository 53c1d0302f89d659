-- Is lease value `held` this worker's (`worker`) bare mark, or one of its runs?
local function ours(held, worker)
  return held == worker or string.sub(held, 1, #worker + 1) == worker .. '/'
end
