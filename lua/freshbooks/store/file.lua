-- The built-in token store: one JSON file, replaced atomically (temp file in the same directory, fsync,
-- rename, fsync of the directory; mode 0600), and a cross-process lock taken with flock(2) on the
-- file's directory. The lock is not on the data file (the rename replaces its inode) nor on a
-- companion file (anyone deleting "<path>.lock" while a holder works would let a second holder in);
-- the directory stays the same inode as long as the token file lives in it. When the atomic replace
-- fails (a full disk, a quota), the file is rewritten in place, in the blocks it already holds.
-- The file is trusted only as our own regular file of at most 64 KiB, read without following a
-- symlink: a FIFO, a device, a symlink or another user's file is refused (store_insecure); a file
-- others could read is made 0600 when it is loaded.
--
--   local store = freshbooks.store.file("tokens.json", { lock_timeout = 30 })
--   store.load()            -> tokens | nil (nothing stored yet) | nil, err
--   store.save(new, prev)   -> true | nil, err
--   store.lock()            -> handle with :unlock() | nil, err
local core = require "freshbooks.core"
local env = require "freshbooks.env"
local errors = require "freshbooks.errors"
local options = require "freshbooks.options"
local record = require "freshbooks.store.record"

local OPTIONS = options.spec{
  lock_timeout = { "number", min = 0, default = 30 },
  mode = { "number", integer = true, min = 0, max = 511, default = 384 }, -- 0600
}

-- `level`: error()'s level from this frame (the callers below call it in a tail call).
local function new(path, opts, level)
  if type(path) ~= "string" or path == "" or path:find("%z") or path:sub(-1) == "/" then
    error("freshbooks.store.file: path must be a file name (a non-empty string without NUL)", level)
  end
  opts = options.check("freshbooks.store.file", OPTIONS, opts, level)
  local lock_timeout, mode = opts.lock_timeout, opts.mode
  local store = { path = path }
  -- "dir/." names the directory itself even when `dir` is a symlink (the lock never follows one).
  local lock_path = (path:match("^(.*)/[^/]*$") or ".") .. "/."
  if lock_path == "/." then lock_path = "/" end

  function store.load()
    local text, err = core.fs.read(path, 65536)
    if not text then
      if not err then return nil end -- nothing stored yet
      return nil, errors.new{ code = err.code, message = err.message }
    end
    local tokens, err2 = record.decode(text, "token file " .. path)
    if not tokens then return nil, err2 end
    return tokens
  end

  function store.save(tokens)
    if type(tokens) ~= "table" then error("freshbooks.store.file: save needs a token table", 2) end
    local text = record.encode(tokens)
    local ok, err = core.fs.write_atomic(path, text, mode)
    -- A full disk must not lose a rotated pair (the stored one is spent): rewrite the file in place,
    -- in the blocks it already holds.
    if not ok and not core.fs.overwrite(path, text) then
      return nil, errors.new{ code = "save_failed", message = err.message }
    end
    return true
  end

  function store.lock()
    local ngx = env.yielding()
    if not ngx then
      -- Inside nginx, a phase that cannot yield (set, header_filter, log, init...) must not wait in
      -- flock either: it tries once, as the transport refuses its requests there.
      local nginx = env.nginx()
      local handle, err = core.fs.lock(lock_path, nginx and 0 or lock_timeout)
      if handle then return handle end
      if nginx and err.code == "lock_timeout" then
        return nil, errors.new{ code = "blocking_phase", message = "the token file is locked, and nginx's "
          .. nginx.get_phase() .. " phase cannot wait for it (use ngx.timer.at or a handler)" }
      end
      return nil, errors.new{ code = err.code, message = err.message }
    end
    -- OpenResty: flock must never wait inside the worker (the holder may be another request of this
    -- very worker, which could then never finish): try, and sleep on the event loop between tries.
    local deadline = ngx.now() + lock_timeout
    while true do
      local handle, err = core.fs.lock(lock_path, 0)
      if handle then return handle end
      if err.code ~= "lock_timeout" or ngx.now() >= deadline then
        return nil, errors.new{ code = err.code, message = err.message }
      end
      ngx.sleep(0.005)
    end
  end

  return setmetatable(store, { __tostring = function() return "freshbooks.store.file(" .. path .. ")" end })
end

-- The module: freshbooks.store.file(path, opts), or .new(path, opts).
local file = {}
function file.new(path, opts) return new(path, opts, 2) end
return setmetatable(file, { __call = function(_, path, opts) return new(path, opts, 2) end })
