-- Shell completion. `freshbooks completion bash|zsh|fish` prints a short script that, at each Tab, asks
-- `freshbooks __complete SHELL -- WORDS...` (the words up to the cursor, the last one being completed)
-- for the candidates: the commands, options and argument kinds come from the rows of
-- freshbooks.cli.commands, resources from the catalogue, report kinds from freshbooks.cli.report,
-- profiles and businesses from the files of this machine (never the network). Nothing is copied into
-- the scripts, so they never go stale.
local complete = {}

local SCRIPTS = {
  bash = [=[
# bash completion for freshbooks (`freshbooks completion bash`)
_freshbooks() {
    local cur=${COMP_WORDS[COMP_CWORD]} IFS=$'\n' c
    local -a out
    out=($("${COMP_WORDS[0]}" __complete bash -- "${COMP_WORDS[@]:1:COMP_CWORD}" 2>/dev/null))
    COMPREPLY=()
    if [ "${out[0]}" = ":files" ]; then
        compopt -o filenames 2>/dev/null
        COMPREPLY=($(compgen -f -- "$cur"))
        return 0
    fi
    for c in "${out[@]}"; do COMPREPLY+=("$(printf '%q' "$c")"); done
}
complete -F _freshbooks freshbooks
]=],
  zsh = [=[
#compdef freshbooks
# zsh completion for freshbooks (`freshbooks completion zsh`)
_freshbooks() {
  local -a items
  items=("${(@f)$(${~words[1]} __complete zsh -- "${(@)words[2,CURRENT]}" 2>/dev/null)}")
  if [[ "${items[1]}" == ":files" ]]; then
    _files
    return
  fi
  items=(${items:#})
  (( ${#items} )) && _describe -t values freshbooks items
}
if [ "$funcstack[1]" = "_freshbooks" ]; then _freshbooks "$@"; else compdef _freshbooks freshbooks; fi
]=],
  fish = [=[
# fish completion for freshbooks (`freshbooks completion fish`)
function __freshbooks_complete
    set -l words (commandline -opc) (commandline -ct)
    set -l out ($words[1] __complete fish -- $words[2..-1] 2>/dev/null)
    if test "$out[1]" = ":files"
        __fish_complete_path (commandline -ct)
        return
    end
    printf '%s\n' $out
end
complete -c freshbooks -f -a '(__freshbooks_complete)'
]=],
}

function complete.completion(ctx)
  local out = ctx:output()
  out:write(SCRIPTS[ctx.args.shell])
  out:commit()
end

local METHODS = { "GET", "POST", "PUT", "PATCH", "DELETE" }

-- The words' profile (--profile, else $FB_PROFILE, else default) and its login record, if any.
local function record_of(ctx, words)
  local config = require "freshbooks.cli.config"
  local cfg = config.new(require("freshbooks.cli").exit)
  local profile, tokens = os.getenv("FB_PROFILE"), nil
  for i, w in ipairs(words) do
    if w == "--profile" then profile = words[i + 1] end
    if w == "--tokens" then tokens = words[i + 1] end
  end
  ctx.cfg = cfg
  if not profile or profile == "" or not profile:match("^[%w][%w_.-]*$") then profile = config.DEFAULT_PROFILE end
  local ok, r = pcall(cfg.read_record, config.record_path(tokens or cfg.tokens_path(profile)))
  return ok and r or nil, cfg
end

-- Candidates of a kind of value: {value, description} pairs, or ":files".
local function values(ctx, kind, words, choices)
  if choices then
    local t = {}
    for i, c in ipairs(choices) do t[i] = { c } end
    return t
  end
  local t = {}
  if kind == "file" then return ":files" end
  if kind == "resource" then
    for _, n in ipairs(require("freshbooks.cli.export").listable()) do t[#t + 1] = { n } end
  elseif kind == "kind" then
    for _, k in ipairs(require("freshbooks.cli.report").KINDS) do t[#t + 1] = { k.name, k.summary } end
  elseif kind == "command" then
    for _, row in ipairs(require("freshbooks.cli.commands").LIST) do t[#t + 1] = { row.name, row.summary } end
  elseif kind == "method" then
    for _, m in ipairs(METHODS) do t[#t + 1] = { m } end
  elseif kind == "profile" then
    local _, cfg = record_of(ctx, words)
    local ok, list = pcall(cfg.profiles)
    for _, p in ipairs(ok and list or {}) do t[#t + 1] = { p } end
  elseif kind == "business" then
    local r = record_of(ctx, words)
    for _, m in ipairs(r and r.businesses or {}) do
      if type(m.name) == "string" then t[#t + 1] = { m.name, "business_id " .. tostring(m.business_id) } end
    end
  end
  return t
end

-- -> the candidates for the last word, given the words before it.
local function candidates(ctx, words)
  local commands = require "freshbooks.cli.commands"
  local cur = (words[#words] or ""):gsub("^['\"]", ""):gsub("\\(.)", "%1") -- as typed: quotes, escapes
  local options = {}
  local function add(list)
    for _, o in ipairs(list or {}) do for name in o[1]:gmatch("%S+") do options[name] = o end end
  end
  add(commands.GLOBAL)
  local row, positional, expect = nil, 0, nil
  for i = 1, #words - 1 do
    local w = words[i]
    if expect then expect = nil
    elseif w:sub(1, 1) == "-" and w ~= "-" then
      local o = options[w]
      if o and not o.flag and not w:find("=", 1, true) then expect = o end
    elseif not row then
      row = commands.by_name[w]
      if row then add(row.options) end
    else
      positional = positional + 1
    end
  end
  if expect then return values(ctx, expect.complete, words, expect.choices) end
  local t = {}
  if cur:sub(1, 1) == "-" then
    local seen = {}
    for name, o in pairs(options) do
      if name:sub(1, 2) == "--" and not seen[name] then seen[name] = true t[#t + 1] = { name, o[2] } end
    end
    t[#t + 1] = { "--help", "Show the help." }
    if not row then t[#t + 1] = { "--version", "Print the version." } end
    table.sort(t, function(a, b) return a[1] < b[1] end)
    return t
  end
  if not row then return values(ctx, "command", words) end
  local arg = row.arguments and row.arguments[positional + 1]
  if not arg then return {} end
  return values(ctx, arg.complete, words, arg.choices)
end

-- `freshbooks __complete SHELL -- WORDS...`: one candidate a line (zsh: value:description, fish:
-- value<TAB>description), only those that start with the word being completed.
function complete.candidates(ctx, argv)
  local shell = argv[2]
  local words = {}
  for i = 4, #argv do words[#words + 1] = argv[i] end
  if #words == 0 then words[1] = "" end
  local ok, list = pcall(candidates, ctx, words)
  if not ok then return end -- a completion never prints an error into the command line
  if list == ":files" then io.stdout:write(":files\n") return end
  local cur = words[#words]:gsub("^['\"]", ""):gsub("\\(.)", "%1")
  local lines = {}
  for _, c in ipairs(list) do
    if c[1]:sub(1, #cur) == cur then
      local desc = c[2] and c[2]:gsub("[%c]", " "):gsub("%.$", "")
      if shell == "zsh" then lines[#lines + 1] = c[1]:gsub(":", "\\:") .. (desc and (":" .. desc) or "")
      elseif shell == "fish" then lines[#lines + 1] = c[1] .. (desc and ("\t" .. desc) or "")
      else lines[#lines + 1] = c[1] end
    end
  end
  if #lines > 0 then io.stdout:write(table.concat(lines, "\n"), "\n") end
end

return complete
