-- A progress line for a terminal: pages and records done, rate, time left. It is fed by each()'s
-- progress callback (pages_done, pages, records) and redrawn in place at most 10 times a second.
-- The command creates one only when stderr is a terminal: piped or redirected, nothing is written.
--   local bar = progress.new(io.stderr, "invoices")
--   acct.invoices:each(q, { progress = bar.update })  ...  bar.finish()
local core = require "freshbooks.core"

local progress = {}

local WIDTH = 20

local function count(n)
  local s = string.format("%d", n)
  local out = s:reverse():gsub("(%d%d%d)", "%1,"):reverse()
  return (out:gsub("^,", ""))
end

local function duration(s)
  s = math.floor(s + 0.5)
  if s < 60 then return s .. "s" end
  if s < 3600 then return ("%dm%02ds"):format(math.floor(s / 60), s % 60) end
  return ("%dh%02dm"):format(math.floor(s / 3600), math.floor(s / 60) % 60)
end

-- `start`: when the work began (default now), if the first callback comes only after a page arrived.
function progress.new(stream, label, start)
  local clock = core.clock.now
  local last_draw, state = nil, nil
  start = start or clock()
  local bar = {}

  local function draw(final)
    local done, pages, records = state[1], state[2], state[3]
    local elapsed = math.max(clock() - start, 1e-6)
    local filled = pages > 0 and math.floor(WIDTH * done / pages) or 0
    local tail
    if final then
      tail = "done in " .. (elapsed < 10 and ("%.1fs"):format(elapsed) or duration(elapsed))
    else
      tail = "ETA " .. (done > 0 and duration(elapsed / done * (pages - done)) or "?")
    end
    stream:write(("\r%s [%s%s] %d/%d pages  %s records  %s/s  %s\27[K"):format(label, ("#"):rep(filled),
      ("-"):rep(WIDTH - filled), done, pages, count(records), count(math.floor(records / elapsed)), tail),
      final and "\n" or "")
    stream:flush()
  end

  -- each()'s progress callback: (pages_done, pages, records_so_far)
  function bar.update(done, pages, records)
    state = { done, pages, records }
    local now = clock()
    if last_draw and now - last_draw < 0.1 and done < pages then return end
    last_draw = now
    draw(false)
  end

  -- The last line stays on the screen; nothing is drawn when nothing was fetched.
  function bar.finish()
    if state then draw(true) end
  end

  -- On failure: end the line so the error starts on its own.
  function bar.abort()
    if state then stream:write("\n") end
  end

  return bar
end

return progress
