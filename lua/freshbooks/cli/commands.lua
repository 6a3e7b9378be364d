-- The commands of `freshbooks`, as rows: the argument parser (lua-argparse), every --help and the shell
-- completion (freshbooks.cli.complete) are made from them. A command is one row here and one function
-- in its module; an option a row names with `complete` is completed from that kind of value.
--   row: {name, module, run (default: name), summary, description, examples = {...},
--         arguments = { {name, description, args = "?", complete = ...} },
--         options = { {"--flag", description, argname, flag = true, count, default, choices, convert, complete} }}
local argparse = require "argparse"

local commands = {}

local function whole(min, max, what)
  return function(s)
    local n = tonumber(s)
    if n and n == math.floor(n) and n >= min and n <= max then return n end
    return nil, ("%s must be a whole number from %d to %d"):format(what, min, max)
  end
end

local MIRROR = { "--mirror", "The mirror file (default: $FB_MIRROR, else $XDG_DATA_HOME/freshbooks/mirror.db,"
  .. " a profile's under profiles/NAME/).", argname = "<file>", complete = "file" }

local BUSINESS = { "--business", "The business: its name, business_id or account_id (default: the profile's,"
  .. " set by `freshbooks use`, else the first).", argname = "<name|id>", complete = "business" }

-- Options every command takes (shown in each command's help).
commands.GLOBAL = {
  { "--profile", "Use this login (default: $FB_PROFILE, else 'default'); `freshbooks profiles` lists them.",
    argname = "<name>", complete = "profile" },
  { "--tokens", "Token file (default: the profile's, $XDG_CONFIG_HOME/freshbooks/tokens.json for 'default').",
    argname = "<file>", complete = "file" },
  { "--api-url", "API base URL (default: the login's, else https://api.freshbooks.com; $FB_API_URL).",
    argname = "<url>" },
  { "--auth-url", "Authorization page base URL (default: the login's, else https://auth.freshbooks.com;"
    .. " $FB_AUTH_URL).", argname = "<url>" },
  { "--ca-file", "CA bundle for TLS, e.g. a sandbox's throwaway CA (default: the login's; $FB_CA_FILE).",
    argname = "<file>", complete = "file" },
  { "--pager", "Show the output through $PAGER (less) when it goes to a terminal.", flag = true },
  { "--no-pager", "Never page (the report pages on a terminal by default).", flag = true },
}

commands.LIST = {
  { name = "login", module = "freshbooks.cli.login",
    summary = "Connect to FreshBooks: allow access in the browser, save the tokens.",
    description = "Connect to FreshBooks. With a loopback redirect URI (http://localhost:PORT/...) it listens "
      .. "there for the browser's return; with an https one, --paste asks for the address the browser landed "
      .. "on. Missing credentials are asked for on a terminal and saved to the config file. A profile that is "
      .. "connected already is replaced only after a yes on the terminal, or with --force.",
    examples = { "freshbooks login", "freshbooks login --no-browser",
      "freshbooks --profile work login --scopes 'user:profile:read user:invoices:read'",
      "freshbooks login --paste        # an https redirect URI, or no browser on this machine" },
    options = {
      { "--scopes", "Scopes to ask for, space or comma separated (default: the app's).", count = "*",
        argname = "<scopes>" },
      { "--no-browser", "Only print the address to open; do not start a browser.", flag = true },
      { "--paste", "Paste the address the browser lands on instead of listening for it.", flag = true },
      { "--port", "Listen on this port: the redirect URI with it must be registered too.",
        convert = whole(1, 65535, "--port"), argname = "<n>" },
      { "--timeout", "Seconds to wait for the browser.", convert = whole(1, 86400, "--timeout"), default = "300",
        argname = "<s>" },
      { "--force", "Replace the profile's login without asking.", flag = true },
    } },
  { name = "status", module = "freshbooks.cli.account",
    summary = "Who is connected: user, businesses, scopes, token expiry, where tokens live.",
    examples = { "freshbooks status", "freshbooks status --json | jq -r .user.email" },
    options = { { "--json", "One JSON document instead of the text.", flag = true } } },
  { name = "logout", module = "freshbooks.cli.account",
    summary = "Revoke the tokens at FreshBooks and remove them from this machine.",
    examples = { "freshbooks logout", "freshbooks --profile work logout" } },
  { name = "profiles", module = "freshbooks.cli.account",
    summary = "List the logins kept side by side (--profile NAME, $FB_PROFILE).",
    examples = { "freshbooks profiles", "freshbooks --profile sandbox login", "FB_PROFILE=sandbox freshbooks status" },
    options = { { "--json", "One JSON document instead of the table.", flag = true } } },
  { name = "use", module = "freshbooks.cli.account",
    summary = "Choose the profile's default business (without BUSINESS: list them).",
    examples = { "freshbooks use", "freshbooks use 'Sandbox Consulting Ltd.'", "freshbooks use 1000002" },
    arguments = { { "business", "A business name, business_id or account_id.", args = "?", complete = "business" } } },
  { name = "report", module = "freshbooks.cli.report",
    summary = "A report: the billing report (outstanding invoices by client, aged) by default.",
    description = "Run a report (KIND, default billing) as a table (on a terminal through the pager), CSV or "
      .. "JSON. FreshBooks' reports run for one business (--business, else the profile's); --param sets any "
      .. "other parameter a report takes (docs/api.md), --download fetches FreshBooks' own CSV. Kinds:\n%KINDS%",
    examples = { "freshbooks report", "freshbooks report billing --as-of 2025-06-30",
      "freshbooks report --format csv > aging.csv",
      "freshbooks report --business 'Sandbox Widgets Inc.' --format json",
      "freshbooks report accounts_aging --as-of 2025-06-30 --currency USD",
      "freshbooks report profit_and_loss --from 2025-01-01 --to 2025-06-30 --param resolution=m",
      "freshbooks report trial_balance --download > trial_balance.csv" },
    arguments = { { "kind", "The report (default: billing).", args = "?", complete = "kind" } },
    options = {
      { "--as-of", "The day, YYYY-MM-DD: aging reference (billing, accounts_aging; default today), the balance"
        .. " sheet's day.", argname = "<date>" },
      { "--business", "Only this business (name, business_id or account_id).", argname = "<name|id>",
        complete = "business" },
      { "--format", "Output format (default: table).", argname = "<format>", choices = { "table", "csv", "json" } },
      { "--parallel", "Pages fetched at once.", convert = whole(1, 32, "--parallel"), default = "4", argname = "<n>" },
      { "--offline", "From the mirror (`freshbooks sync`), not the API: no network, in milliseconds.", flag = true },
      MIRROR,
      { "--from", "First day, YYYY-MM-DD (revenue and FreshBooks' reports).", argname = "<date>" },
      { "--to", "Last day, YYYY-MM-DD (revenue and FreshBooks' reports).", argname = "<date>" },
      { "--currency", "The currency of FreshBooks' report, e.g. USD (default: the business's).", argname = "<code>" },
      { "--param", "Another parameter of FreshBooks' report, e.g. resolution=3m or clientids=1,2 (repeatable).",
        count = "*", argname = "<name=value>" },
      { "--download", "FreshBooks' own CSV of the report (its download_token), not the rows written here.",
        flag = true },
      { "--basis", "invoiced (sent invoices) or collected (payments) (revenue; default invoiced).",
        argname = "<basis>", choices = { "invoiced", "collected" } },
      { "--days", "The sales window in days (dso; default 90).", convert = whole(1, 3660, "--days"),
        argname = "<n>" },
    } },
  { name = "export", module = "freshbooks.cli.export",
    summary = "Stream every record of a list resource as JSON lines or CSV.",
    examples = { "freshbooks export invoices -o invoices.jsonl", "freshbooks export clients --format csv | head",
      "freshbooks export invoices --search customerid=42 --include lines --sort=-id" },
    arguments = { { "resource", "A list resource of the catalogue: invoices, clients, projects, ...",
      complete = "resource" } },
    options = {
      BUSINESS,
      { "--search", "A FreshBooks filter, e.g. customerid=42 or date_min=2025-01-01 (repeatable).", count = "*",
        argname = "<key=value>" },
      { "--include", "Include related data, e.g. lines (repeatable).", count = "*", argname = "<name>" },
      { "--sort", "Sort field; a leading - sorts descending (write --sort=-field).", argname = "<field>" },
      { "--format", "Output format.", choices = { "jsonl", "csv" }, default = "jsonl", argname = "<format>" },
      { "--parallel", "Pages fetched at once.", convert = whole(1, 32, "--parallel"), default = "4", argname = "<n>" },
      { "-o --output", "Write to this file (replaced only when the export is complete).", argname = "<file>",
        complete = "file" },
    } },
  { name = "sync", module = "freshbooks.cli.mirror",
    summary = "Mirror FreshBooks into a local SQLite file: everything first, then what changed.",
    description = "Copy every business (or --business) and every resource FreshBooks lists into the mirror, "
      .. "then on later runs only what changed (deletes included). Safe to interrupt or kill: the next run goes "
      .. "on where it stopped. --watch keeps it current: a sync every --interval seconds, and between them the "
      .. "webhook events handed to --listen (a Unix socket) re-read exactly their record. docs/mirror.md.",
    examples = { "freshbooks sync", "freshbooks sync --business 'Sandbox Widgets Inc.' --resource invoices",
      "freshbooks sync --watch --interval 300 --listen /run/user/1000/freshbooks-events",
      "freshbooks sync --full     # read everything again (finds records gone without a trace)",
      "freshbooks sync --daemon --cluster /etc/freshbooks/cluster.json --metrics /run/freshbooks.prom" },
    options = {
      { "--business", "Only this business (repeatable; name, business_id or account_id).", count = "*",
        argname = "<name|id>", complete = "business" },
      { "--resource", "Only this resource (repeatable): invoices, clients, time_entries, ...", count = "*",
        argname = "<name>", complete = "resource" },
      MIRROR,
      { "--parallel", "Pages fetched at once while reading whole lists.", convert = whole(1, 32, "--parallel"),
        default = "4", argname = "<n>" },
      { "--rate", "Request budget: requests per second (default 3).", convert = whole(1, 1000, "--rate"),
        argname = "<n>" },
      { "--burst", "Request budget: requests at once before the rate applies (default 120).",
        convert = whole(1, 100000, "--burst"), argname = "<n>" },
      { "--max-requests", "Stop after this many requests (the next run goes on).",
        convert = whole(1, 100000000, "--max-requests"), argname = "<n>" },
      { "--no-budget", "No request budget (FreshBooks' 429s are still honoured).", flag = true },
      { "--reconcile", "Compare FreshBooks' counts with the mirror's now (else daily).", flag = true },
      { "--full", "Read every list whole again, checking every record the mirror holds.", flag = true },
      { "--watch", "Keep syncing until interrupted.", flag = true },
      { "--interval", "Seconds between syncs with --watch, or of each connection with --daemon (default 60).",
        convert = whole(1, 86400, "--interval"),
        default = "60", argname = "<s>" },
      { "--listen", "With --watch: apply webhook events written to this Unix socket, a JSON object a line.",
        argname = "<path>", complete = "file" },
      { "--daemon", "Sync every connection whose tokens the --cluster's Redis keeps into its PostgreSQL, and "
        .. "apply the webhook events of its stream, until interrupted (docs/deployment.md).", flag = true },
      { "--cluster", "With --daemon: a private JSON file naming the PostgreSQL and Redis to serve.",
        argname = "<file>", complete = "file" },
      { "--concurrency", "With --daemon: connections synced at once by all workers of the database (default 4).",
        convert = whole(1, 1000, "--concurrency"), argname = "<n>" },
      { "--claim-after", "With --daemon: seconds an event read by a worker that died stays pending before "
        .. "another claims it (default 30).", convert = whole(1, 3600, "--claim-after"), argname = "<s>" },
      { "--metrics", "With --daemon: write Prometheus' text format here every second.", argname = "<file>",
        complete = "file" },
      { "--status", "With --daemon: each connection's last sync, lag, pending events and last error; then exit.",
        flag = true },
      { "--json", "The summary as one JSON document.", flag = true },
      { "-v --verbose", "Every resource in the summary, also those without changes.", flag = true },
    } },
  { name = "sql", module = "freshbooks.cli.mirror",
    summary = "Ask the mirror in SQL (read-only): a table, CSV or JSON.",
    description = "Run one read-only SQL statement on the mirror (`freshbooks sync` fills it; docs/mirror.md has "
      .. "its tables). ? placeholders take --param values in order.",
    examples = { "freshbooks sql 'SELECT count(*) FROM invoices WHERE vis_state <> 1'",
      "freshbooks sql \"SELECT organization, sum(outstanding_cents) / 100.0 FROM invoices GROUP BY 1\" --format csv",
      "freshbooks sql 'SELECT * FROM clients WHERE id = ?' --param 10001 --format json" },
    arguments = { { "query", "One SELECT (or WITH ... SELECT)." } },
    options = {
      { "--param", "A value for the next ? (repeatable).", count = "*", argname = "<value>" },
      { "--format", "Output format (default: table).", argname = "<format>", choices = { "table", "csv", "json" } },
      { "--max-rows", "Refuse answers longer than this.", convert = whole(1, 100000000, "--max-rows"),
        default = "1000000", argname = "<n>" },
      { "--timeout", "Stop the query after this many seconds.", convert = whole(1, 86400, "--timeout"),
        default = "60", argname = "<s>" },
      { "-o --output", "Write to this file (replaced only when complete).", argname = "<file>", complete = "file" },
      MIRROR,
    } },
  { name = "api", module = "freshbooks.cli.api",
    summary = "One authenticated request to any API path; prints the JSON answer.",
    description = "One authenticated request (refreshed automatically), like `gh api`. {account_id}, "
      .. "{business_id} and {business_uuid} in PATH are replaced with those of the business. On a terminal the "
      .. "JSON is indented; piped or redirected it is FreshBooks' body exactly.",
    examples = { "freshbooks api GET /auth/api/v1/users/me",
      "freshbooks api GET '/accounting/account/{account_id}/invoices/invoices' --query per_page=5",
      "freshbooks api POST '/accounting/account/{account_id}/users/clients' --data @client.json" },
    arguments = { { "method", "GET, POST, PUT, PATCH or DELETE.", complete = "method" },
      { "path", "Path under the API URL, e.g. /auth/api/v1/users/me." } },
    options = {
      { "--query", "A query parameter key=value (repeatable).", count = "*", argname = "<key=value>" },
      { "--data", "Request body: JSON text, @file, or @- for stdin.", argname = "<json|@file>" },
      BUSINESS,
    } },
  { name = "help", module = "freshbooks.cli.commands",
    summary = "Help on a command (freshbooks help COMMAND).",
    examples = { "freshbooks help export", "freshbooks help report" },
    arguments = { { "topic", "A command.", args = "?", complete = "command" } } },
  { name = "completion", module = "freshbooks.cli.complete",
    summary = "Print the shell completion script for bash, zsh or fish.",
    description = "Print the completion script for SHELL. It completes commands, options, resources, report "
      .. "kinds, profiles and the businesses of the login (read from the login record: no network).",
    examples = { "freshbooks completion bash > ~/.local/share/bash-completion/completions/freshbooks",
      "freshbooks completion zsh > \"${fpath[1]}/_freshbooks\"",
      "freshbooks completion fish > ~/.config/fish/completions/freshbooks.fish" },
    arguments = { { "shell", "bash, zsh or fish.", choices = { "bash", "zsh", "fish" } } } },
}

commands.by_name = {}
for _, row in ipairs(commands.LIST) do commands.by_name[row.name] = row end

-- Help ------------------------------------------------------------------------------------------------

local Help = {}

function commands.is_help(e)
  if getmetatable(e) == Help then return e end
end

-- Options as help lines, wrapped by hand at 100 columns under their description (argparse would
-- re-wrap an epilog's long lines without the indent).
local WIDTH = 100
local function option_lines(list)
  local lines, width = {}, 0
  local function label(o) return o[1] .. (o.flag and "" or (" " .. (o.argname or "<value>"))) end
  for _, o in ipairs(list) do width = math.max(width, #label(o)) end
  local indent = 3 + width + 2
  for _, o in ipairs(list) do
    local line = ("   %-" .. width .. "s  "):format(label(o))
    for word in o[2]:gmatch("%S+") do
      if #line + 1 + #word > WIDTH and #line > indent then
        lines[#lines + 1] = line
        line = (" "):rep(indent) .. word
      else
        line = line .. (#line > indent and " " or "") .. word
      end
    end
    lines[#lines + 1] = line
  end
  return table.concat(lines, "\n")
end

local EXIT = "Exit status: 0 ok, 1 failure, 2 usage, 3 not connected (run `freshbooks login`), 4 rate limited."

local function epilog(row)
  local parts = {}
  if row.examples then
    local ex = {}
    for i, e in ipairs(row.examples) do ex[i] = "   $ " .. e end
    parts[#parts + 1] = "Examples:\n" .. table.concat(ex, "\n")
  end
  parts[#parts + 1] = "Global options (before or after the command):\n" .. option_lines(commands.GLOBAL)
  parts[#parts + 1] = EXIT
  return table.concat(parts, "\n\n")
end

local function kinds_text()
  local kinds, lines, width = require("freshbooks.cli.report").KINDS, {}, 0
  for _, k in ipairs(kinds) do width = math.max(width, #k.name) end
  for _, k in ipairs(kinds) do
    lines[#lines + 1] = ("   %-" .. width .. "s  %s"):format(k.name, k.summary)
  end
  return table.concat(lines, "\n")
end

local function add_option(cmd, o)
  local e = o.flag and cmd:flag(o[1], o[2]) or cmd:option(o[1], o[2])
  if o.argname then e:argname(o.argname) end
  if o.choices then e:choices(o.choices) end
  if o.default then e:default(o.default) end
  if o.count then e:count(o.count) end
  if o.convert then e:convert(o.convert) end
end

-- The parser: one argparse command per row. -h/--help raises a Help (the command prints it on stdout,
-- where a closed pipe or a failed write is seen), never argparse's print and os.exit.
function commands.parser()
  local p = argparse("freshbooks",
    "FreshBooks from the command line: connect once, then report, export and call the API.")
    :command_target("command"):require_command(false):add_help(false):help_max_width(WIDTH)
  local function help_flag(cmd)
    cmd:flag("-h --help", "Show this help."):action(function()
      error(setmetatable({ help = cmd:get_help() }, Help), 0)
    end)
  end
  help_flag(p)
  p:flag("--version", "Print the version and exit.")
  for _, o in ipairs(commands.GLOBAL) do add_option(p, o) end
  local rows = {}
  for _, row in ipairs(commands.LIST) do
    local cmd = p:command(row.name):add_help(false):summary(row.summary)
      :description(((row.description or row.summary):gsub("%%KINDS%%", kinds_text)))
      :epilog(epilog(row))
    help_flag(cmd)
    for _, a in ipairs(row.arguments or {}) do
      local arg = cmd:argument(a[1], a[2])
      if a.args then arg:args(a.args) end
      if a.choices then arg:choices(a.choices) end
    end
    for _, o in ipairs(row.options or {}) do add_option(cmd, o) end
    rows[row.name] = cmd
  end
  p:epilog("Run `freshbooks help COMMAND` (or COMMAND --help) for its options and examples.\n\n" .. EXIT
    .. "\nCredentials: FB_CLIENT_ID, FB_CLIENT_SECRET, FB_REDIRECT_URI, else the config file.")
  -- Usage errors leave through cli.exit's type (status 2) with the usage of the command at fault.
  local Exit = require("freshbooks.cli").Exit
  p.error = function(parser, msg)
    error(setmetatable({ status = 2, message = msg, usage = parser:get_usage() }, Exit), 0)
  end
  commands.parsers = rows
  commands.root = p
  return p
end

-- The help of a command (nil: the overview).
function commands.help(name)
  if not commands.root then commands.parser() end
  return (name and commands.parsers[name] or commands.root):get_help()
end

-- `freshbooks help [COMMAND]`
function commands.help_command(ctx)
  local topic = ctx.args.topic
  if topic and not commands.by_name[topic] then
    local names = {}
    for _, row in ipairs(commands.LIST) do names[#names + 1] = row.name end
    require("freshbooks.cli").exit(2, "%s", require("freshbooks.cli.text").unknown("no command", topic, names,
      "commands"))
  end
  local out = ctx:output()
  out:write(commands.help(topic), "\n")
  out:commit()
end
commands.by_name.help.run = "help_command"

return commands
