---@meta
-- lua-freshbooks' public API for editors (LuaLS / lua-language-server) and the source of the API
-- reference (`make docs`: docs/ldoc.lua turns these annotations into LDoc's, build/docs/index.html).
-- Nothing here runs. Add this directory to `Lua.workspace.library`; the module tables are the classes
-- named after their modules (`freshbooks`, `freshbooks.errors`, ...), so annotate a require when your
-- editor does not follow it: `local freshbooks = require "freshbooks" ---@type freshbooks`.
-- Runtime failures return `nil, err` (a freshbooks.Error); bad arguments raise. The prose is in
-- docs/session.md, docs/api.md, docs/core.md, docs/guest.md and docs/deployment.md.

---The module (`require "freshbooks"`).
---@class freshbooks
---@field _VERSION string the library's version (FRESHBOOKS_VERSION in src/freshbooks.h, read from the core)
---@field version string the same as _VERSION
---@field errors freshbooks.errors the error type
---@field transport freshbooks.transport the transports
---@field store freshbooks.store the token stores
---@field webhook freshbooks.webhook webhook signatures
local freshbooks = {}

---A session: one FreshBooks connection (an app's credentials and one user's tokens). Bad
---configuration raises, unknown option names included.
---@param opts freshbooks.Options
---@return freshbooks.Session
function freshbooks.new(opts) end

---Many connections of one app: a store per connection and an LRU of live sessions.
---@param opts freshbooks.ConnectionsOptions
---@return freshbooks.Connections
function freshbooks.connections(opts) end

---The options of `freshbooks.new{...}` (docs/session.md).
---@class freshbooks.Options
---@field client_id string the app's client ID (required)
---@field client_secret string the app's client secret (required)
---@field redirect_uri? string the redirect URI (required unless redirect_uris has exactly one)
---@field redirect_uris? string[] every URI registered for the app; redirect_uri must be one of them
---@field tokens? freshbooks.Tokens tokens to start from
---@field store? freshbooks.Store load, save and lock together (store.file, store.redis)
---@field load? freshbooks.LoadHook reads the stored tokens (nil: none)
---@field save? freshbooks.SaveHook stores a new pair before it is used
---@field lock? freshbooks.LockHook a lock across processes: a handle with :unlock(), or an unlock function
---@field api_url? string default https://api.freshbooks.com
---@field auth_url? string default https://auth.freshbooks.com
---@field timeout? number seconds per request (default 60)
---@field leeway? number refresh this many seconds before expires_at (default 60)
---@field scopes? string[]|string default scopes for authorize_url
---@field transport? freshbooks.Transport default: the C core over libcurl (cosockets inside OpenResty)
---@field cainfo? string CA file (default transport)
---@field capath? string CA directory (default transport)
---@field proxy? string proxy URL (default transport)
---@field connect_timeout? number seconds (default transport)
---@field insecure_no_verify_tls? boolean the only way to turn TLS verification off
---@field user_agent? string default lua-freshbooks/<version>
---@field max_body? integer largest response body in bytes (default 64 MiB)
---@field pool_size? integer OpenResty: the cosocket pool's size (16)
---@field keepalive? number OpenResty: idle seconds of a pooled connection (60)
---@field retry? freshbooks.RetryOptions|false retry options (default on), or false
---@field log? fun(event:table) redacted events (type, line); nothing it does reaches the call
---@field clock? fun():number epoch seconds (tests)
---@field sleep? fun(seconds:number) how to wait for a refresh running in another coroutine (e.g. ngx.sleep)

---An OAuth token pair.
---@class freshbooks.Tokens
---@field access_token string
---@field refresh_token string
---@field expires_at? number epoch seconds
---@field created_at? number epoch seconds, with expires_in
---@field expires_in? number seconds
---@field scope? string

---A request of `fb:request`.
---@class freshbooks.Request
---@field method? string default GET
---@field path? string relative to api_url
---@field url? string absolute, instead of path
---@field query? string|table a string as is, a table rendered by core.codec.query
---@field json? any sent as a JSON body
---@field body? string|table a raw body (or body parts, secrets among them)
---@field headers? table<string,string> yours win over the session's
---@field timeout? number seconds, this request only
---@field idempotent? boolean false: never sent twice, whatever the method

---An answer.
---@class freshbooks.Response
---@field status integer HTTP status
---@field headers table<string,string|string[]> lower-cased names; a repeated header is an array
---@field body string the raw body
---@field data? any the decoded JSON (object nulls left out, whole numbers as integers)

---A membership: one business the user belongs to.
---@class freshbooks.Membership
---@field account_id string the accounting family's id (fb:account)
---@field business_id integer the projects family's id (fb:business)
---@field business_uuid string
---@field name string
---@field role string
---@field membership_id integer
---@field business table FreshBooks' own business object

---A session (`freshbooks.new`). Tokens are refreshed before expiry and once after a 401; every new
---pair goes to save(new, previous) before it is used. Its settings read back; nothing else shows.
---@class freshbooks.Session
---@field client_id string
---@field redirect_uri string the one in use
---@field api_url string without a trailing slash
---@field auth_url string
---@field timeout number seconds per request
---@field leeway number seconds before expires_at a refresh is due
local Session = {}

---Sends one request with the session's tokens.
---@param req freshbooks.Request
---@return freshbooks.Response|nil res
---@return freshbooks.Error? err
function Session:request(req) end

---Runs many requests at once; results in order.
---@param reqs freshbooks.Request[]
---@param opts? {concurrency:integer}
---@return {res:freshbooks.Response?,err:freshbooks.Error?}[] results
function Session:batch(reqs, opts) end

---A stream of requests: s:add(req) -> id, s:next() -> id, res, err as each completes (nil once none
---is left), s:close(). A 401 among them refreshes once; each such request is sent once more.
---@param opts? {concurrency:integer}
---@return freshbooks.Stream|nil stream
---@return freshbooks.Error? err
function Session:stream(opts) end

---Forces a refresh (unless the tokens changed since the call began).
---@return boolean|nil ok
---@return freshbooks.Error? err
function Session:refresh() end

---A copy of the current tokens.
---@return freshbooks.Tokens|nil tokens
function Session:tokens() end

---Whether there are tokens, in memory or in the store.
---@return boolean
function Session:authorized() end

---Masks every secret the session has held (by exact value) in s, and, unless exact, anything else
---that looks like a token (long runs of letters and digits).
---@param s string
---@param exact? boolean only the session's own secrets (ids such as UUIDs stay readable)
---@return string
function Session:redact(s, exact) end

---The authorization URL to send the user to, and the state to keep for the callback.
---@param opts? {scopes:string[]|string,state:string}
---@return string url
---@return string state 16 CSPRNG bytes in hex unless given
function Session:authorize_url(opts) end

---Checks the callback's state (in constant time) and exchanges its code.
---@param query string|table the callback's query string or its fields
---@param expected_state string the state authorize_url gave
---@return freshbooks.Tokens|nil tokens
---@return freshbooks.Error? err state_mismatch, access_denied, ...
function Session:authorize_callback(query, expected_state) end

---Exchanges an authorization code for tokens (saved before they are used).
---@param code string
---@return freshbooks.Tokens|nil tokens
---@return freshbooks.Error? err
function Session:exchange(code) end

---Revokes the grant at FreshBooks and forgets the tokens in memory (the store is left as is).
---@return boolean|nil ok
---@return freshbooks.Error? err
function Session:revoke() end

---The user (GET /auth/api/v1/users/me's response), cached per session.
---@param refresh? boolean ask FreshBooks again
---@return table|nil me
---@return freshbooks.Error? err
function Session:me(refresh) end

---The user's memberships.
---@param refresh? boolean
---@return freshbooks.Membership[]|nil memberships
---@return freshbooks.Error? err
function Session:memberships(refresh) end

---Iterates the user's businesses; when the identity cannot be read, the loop gets (false, err) once.
---@param refresh? boolean
---@return fun():freshbooks.Membership|false|nil,freshbooks.Error? iterator
function Session:businesses(refresh) end

---The membership whose business_id, account_id, business_uuid or name (exact, then any case) is key.
---@param key string|integer
---@return freshbooks.Membership|nil membership
---@return freshbooks.Error? err not_found, ambiguous
function Session:find_business(key) end

---The accounting family of one account: clients, invoices, ..., reports, callbacks, attachments.
---@param account_id string
---@return freshbooks.Account
function Session:account(account_id) end

---The projects family of one business: projects, time_entries, services, service_rates, team_members.
---@param business_id integer|string
---@return freshbooks.Business
function Session:business(business_id) end

---The accounting-business family, keyed by a membership's business_uuid: ledger_accounts, reports.
---@param business_uuid string
---@return freshbooks.AccountingBusiness
function Session:accounting_business(business_uuid) end

---One account's resources (docs/api.md has the table); an unknown name raises.
---@class freshbooks.Account
---@field account_id string
---@field clients freshbooks.Resource
---@field invoices freshbooks.Resource also share_link, send_by_email, mark_as_sent, pdf
---@field estimates freshbooks.Resource also send_by_email, mark_as_sent, accept
---@field expenses freshbooks.Resource
---@field expense_categories freshbooks.Resource
---@field items freshbooks.Resource
---@field payments freshbooks.Resource
---@field taxes freshbooks.Resource
---@field credit_notes freshbooks.Resource
---@field other_incomes freshbooks.Resource
---@field bills freshbooks.Resource
---@field bill_payments freshbooks.Resource
---@field bill_vendors freshbooks.Resource
---@field staff freshbooks.Resource
---@field gateways freshbooks.Resource
---@field invoice_profiles freshbooks.Resource
---@field tasks freshbooks.Resource
---@field journal_entries freshbooks.Resource
---@field journal_entry_details freshbooks.Resource
---@field journal_entry_accounts freshbooks.Resource
---@field callbacks freshbooks.Resource webhook callbacks: also verify, resend
---@field reports freshbooks.AccountReports
---@field attachments freshbooks.Upload
---@field images freshbooks.Upload
---@field systems freshbooks.Resource the account's system (get)
---@field invoice_payment_options freshbooks.PaymentOptions

---An account's reports (acct.reports.X:get{...}, :download(token)).
---@class freshbooks.AccountReports
---@field profit_and_loss freshbooks.Report
---@field tax_summary freshbooks.Report
---@field payments_collected freshbooks.Report
---@field accounts_aging freshbooks.Report
---@field balance_sheet freshbooks.Report
---@field trial_balance freshbooks.Report
---@field invoice_details freshbooks.Report
---@field expense_details freshbooks.Report
---@field manual_journal_entry freshbooks.Report

---One business's resources.
---@class freshbooks.Business
---@field business_id integer|string
---@field projects freshbooks.Resource
---@field time_entries freshbooks.Resource
---@field services freshbooks.Resource also rate, create_rate, update_rate
---@field service_rates freshbooks.Resource every service's rate (list)
---@field team_members freshbooks.Resource the business's team (list, get by uuid; `active = true|false`)

---One accounting business's resources (by business_uuid).
---@class freshbooks.AccountingBusiness
---@field business_uuid string
---@field ledger_accounts freshbooks.Resource the chart of accounts (list, get, create, update)
---@field reports {general_ledger:freshbooks.Report,cash_flow:freshbooks.Report,chart_of_accounts:freshbooks.Report}

---A query: page, per_page, search, include, sort, and any other key as a plain parameter (docs/api.md).
---@alias freshbooks.Query table|string

---Paging options of each and all.
---@class freshbooks.PagingOptions
---@field parallel? integer pages in flight at once (default 1)
---@field max_pages? integer a longer walk fails with too_many_pages (default 100000)
---@field progress? fun(pages_done:integer,pages:integer|nil,records:integer) after each page

---A list's paging facts.
---@class freshbooks.ListMeta
---@field page integer
---@field pages integer
---@field per_page integer
---@field total integer

---One resource of an account or business. A verb FreshBooks does not have for it raises.
---@class freshbooks.Resource
local Resource = {}

---One page of records.
---@param q? freshbooks.Query
---@return table[]|nil records
---@return freshbooks.ListMeta|freshbooks.Error meta_or_err
function Resource:list(q) end

---One record.
---@param id integer|string
---@param q? freshbooks.Query
---@return table|nil record
---@return freshbooks.Error? err
function Resource:get(id, q) end

---Creates a record (the body is wrapped in the singular key for you).
---@param fields table
---@param q? freshbooks.Query
---@return table|nil record
---@return freshbooks.Error? err
function Resource:create(fields, q) end

---Updates a record (refuses vis_state beside other fields: FreshBooks would drop them).
---@param id integer|string
---@param fields table
---@param q? freshbooks.Query
---@return table|nil record
---@return freshbooks.Error? err
function Resource:update(id, fields, q) end

---Deletes a record (PUT vis_state = 1 or HTTP DELETE, as the resource wants).
---@param id integer|string
---@return boolean|nil ok
---@return freshbooks.Error? err
function Resource:delete(id) end

---Archives a record (vis_state = 2).
---@param id integer|string
---@return table|nil record
---@return freshbooks.Error? err
function Resource:archive(id) end

---Iterates every record, page by page, in O(page) memory (with parallel pages: at most twice that).
---On a failure the loop gets `false, err` once, then ends.
---@param q? freshbooks.Query
---@param opts? freshbooks.PagingOptions
---@return fun():table|false|nil,freshbooks.Error? iterator
function Resource:each(q, opts) end

---Every record, collected.
---@param q? freshbooks.Query
---@param opts? freshbooks.PagingOptions
---@return table[]|nil records
---@return freshbooks.ListMeta|freshbooks.Error meta_or_err
function Resource:all(q, opts) end

---invoices: the client's link to an invoice.
---@param id integer|string
---@return string|nil link
---@return freshbooks.Error? err
function Resource:share_link(id) end

---invoices, estimates: sends by e-mail (never retried: sent twice it mails twice).
---@param id integer|string
---@param opts {recipients:string[],subject:string?,body:string?,include_pdf:boolean?}
---@return table|nil record
---@return freshbooks.Error? err
function Resource:send_by_email(id, opts) end

---invoices, estimates: marks as sent.
---@param id integer|string
---@return table|nil record
---@return freshbooks.Error? err
function Resource:mark_as_sent(id) end

---estimates: records the client's acceptance (status 5, "accepted").
---@param id integer|string
---@return table|nil estimate
---@return freshbooks.Error? err
function Resource:accept(id) end

---invoices: the invoice as FreshBooks prints it (bad_response when the answer is no PDF).
---@param id integer|string
---@return string|nil bytes the PDF
---@return string|freshbooks.Error content_type_or_err
function Resource:pdf(id) end

---callbacks: confirms a webhook with the verifier of its verification delivery.
---@param id integer|string
---@param verifier string
---@return table|nil callback
---@return freshbooks.Error? err
function Resource:verify(id, verifier) end

---callbacks: asks FreshBooks to send the verification again.
---@param id integer|string
---@return table|nil callback
---@return freshbooks.Error? err
function Resource:resend(id) end

---services: a service's rate.
---@param id integer|string
---@return table|nil rate
---@return freshbooks.Error? err
function Resource:rate(id) end

---services: sets a service's rate, e.g. {rate = "45.00"}.
---@param id integer|string
---@param fields table
---@return table|nil rate
---@return freshbooks.Error? err
function Resource:create_rate(id, fields) end

---services: changes a service's rate.
---@param id integer|string
---@param fields table
---@return table|nil rate
---@return freshbooks.Error? err
function Resource:update_rate(id, fields) end

---A report (acct.reports.profit_and_loss, fb:accounting_business(uuid).reports.general_ledger, ...).
---@class freshbooks.Report
local Report = {}

---The report for a query: the parameters the report takes (docs/api.md), checked (an unknown name, a
---date that is no day, a currency outside ISO 4217, a start after the end raise); a string is sent as is.
---@param q? table|string
---@return table|nil report its result (the chart of accounts: the list of accounts)
---@return freshbooks.Error? err
function Report:get(q) end

---FreshBooks' CSV of a report, by the download_token its answer carries (every report but the chart of
---accounts); computed as the report is now, with the parameters the token was given.
---@param token string
---@return string|nil csv
---@return freshbooks.Error? err
function Report:download(token) end

---Uploads (acct.attachments, acct.images).
---@class freshbooks.Upload
local Upload = {}

---Uploads bytes.
---@param content string
---@param opts {filename:string,content_type:string?}
---@return table|nil upload with its jwt
---@return string|freshbooks.Error link_or_err
function Upload:upload(content, opts) end

---Downloads an upload.
---@param jwt string
---@return freshbooks.Response|nil res
---@return freshbooks.Error? err
function Upload:get(jwt) end

---An invoice's online payment options (acct.invoice_payment_options).
---@class freshbooks.PaymentOptions
local PaymentOptions = {}

---The options set on an invoice.
---@param invoice_id integer|string
---@return table|nil options
---@return freshbooks.Error? err not_found when none were set
function PaymentOptions:get(invoice_id) end

---Sets an invoice's options, e.g. {gateway_name = "stripe", has_credit_card = true}.
---@param invoice_id integer|string
---@param fields table
---@return table|nil options
---@return freshbooks.Error? err
function PaymentOptions:create(invoice_id, fields) end

---The account's defaults for invoices.
---@return table|nil options
---@return freshbooks.Error? err
function PaymentOptions:defaults() end

---An error: what every runtime failure returns. tostring(err) is readable and holds no secret;
---`..` works on it.
---@class freshbooks.Error
---@field code string stable: not_found, validation, unauthorized, rate_limited, timeout, reauth_required, ...
---@field message string
---@field status? integer HTTP status
---@field errno? integer FreshBooks' error number
---@field errors? {field:string?,message:string?,errno:integer?,object:string?,value:any}[] field errors
---@field retry_after? number seconds (rate_limited)
---@field oauth_error? string RFC 6749's error name
---@field tokens? freshbooks.Tokens save_failed, conflict, refresh_uncertain: the pair to keep
---@field cause? freshbooks.Error lock_failed: why

---The error type (`freshbooks.errors`).
---@class freshbooks.errors
local errors = {}

---A new error.
---@param t {code:string,message:string?,status:integer?,errno:integer?,errors:table?}
---@return freshbooks.Error
function errors.new(t) end

---Whether x is a freshbooks.Error.
---@param x any
---@return boolean
function errors.is(x) end

---The error a response carries (every FreshBooks error shape, also with HTTP 200), or nil.
---@param res freshbooks.Response
---@return freshbooks.Error|nil
function errors.from_response(res) end

---The error of a C-core failure table {code, message, ...}.
---@param t table
---@return freshbooks.Error
function errors.from_core(t) end

---Seconds to wait for a Retry-After value (seconds or an HTTP date).
---@param value string
---@param now? number epoch seconds
---@return number|nil
function errors.retry_after(value, now) end

---load() -> tokens | nil (nothing stored) | nil, err.
---@alias freshbooks.LoadHook fun():freshbooks.Tokens|nil,freshbooks.Error?

---save(new, previous) -> true | nil, err (previous: the pair new was refreshed from).
---@alias freshbooks.SaveHook fun(new:freshbooks.Tokens,previous:freshbooks.Tokens|nil):boolean|nil,freshbooks.Error?

---lock() -> a handle with :unlock() | an unlock function | nil, err.
---@alias freshbooks.LockHook fun():table|function|nil,freshbooks.Error?

---What a session needs from a token store.
---@class freshbooks.Store
---@field load freshbooks.LoadHook
---@field save freshbooks.SaveHook
---@field lock? freshbooks.LockHook

---The token stores (`freshbooks.store`).
---@class freshbooks.store
---@field redis freshbooks.store.redis
---@field file freshbooks.store.file

---The file store (`freshbooks.store.file`): one JSON file, replaced atomically with mode 0600, locked
---with flock(2) on its directory. Call it with the path, or use .new.
---@class freshbooks.store.file
---@overload fun(path:string,opts?:{lock_timeout:number?,mode:integer?}):freshbooks.Store
local file_store = {}

---A store in one file.
---@param path string
---@param opts? {lock_timeout:number?,mode:integer?}
---@return freshbooks.Store
function file_store.new(path, opts) end

---The Redis store (`freshbooks.store.redis`): call it with its options for one connection's store.
---@class freshbooks.store.redis
---@overload fun(opts:freshbooks.RedisStoreOptions):freshbooks.RedisStore
local redis_store = {}

---A store per connection id under one prefix: stores(id) is that connection's store.
---@param opts freshbooks.RedisKeyspaceOptions
---@return freshbooks.RedisKeyspace
function redis_store.keyspace(opts) end

---Connection settings: the store picks the client (resty.redis in nginx, lua-redis elsewhere).
---@class freshbooks.RedisSettings
---@field host? string (not with sentinel)
---@field port? integer (6379)
---@field tls? {server_name:string?,ca_file:string?} {} turns TLS on; verification cannot be turned off
---@field username? string an ACL user (needs password)
---@field password? string
---@field database? integer (0)
---@field sentinel? {addresses:string[],name:string,username:string?,password:string?} "host:port" addresses

---Options of a keyspace: freshbooks.store.redis's, with prefix and legacy instead of the keys.
---@class freshbooks.RedisKeyspaceOptions
---@field redis (fun():table|nil,string?)|freshbooks.RedisSettings a connected client per call, or settings
---@field prefix? string ("freshbooks:")
---@field legacy? boolean read a connection's key of the layout before (<prefix>tokens:<id>) (true)
---@field lock_ttl? number seconds (30)
---@field lock_timeout? number seconds to wait for the lock (lock_ttl + 5)
---@field timeout? number seconds per store operation, everything included (5)
---@field replicas? integer WAIT for this many replicas before a save counts (0)
---@field replica_timeout? number seconds WAIT waits (1)
---@field wipe_check? number|false seconds between checks that Redis kept its data (1)
---@field pending? {shared_dict?:string,dir?:string} where the node keeps pairs a save could not write
---@field release? fun(client:table,healthy:boolean) give a client back (resty.redis: set_keepalive)
---@field sleep? fun(seconds:number)
---@field keepalive? number resty.redis pool idle seconds (60)
---@field pool_size? integer resty.redis pool size (100)

---Options of freshbooks.store.redis{...}.
---@class freshbooks.RedisStoreOptions
---@field redis (fun():table|nil,string?)|freshbooks.RedisSettings a connected client per call, or settings
---@field key string the connection's key
---@field lock_key? string default key .. ":lock"
---@field state_prefix? string default key .. ":state:"
---@field lock_ttl? number seconds (30)
---@field lock_timeout? number seconds to wait for the lock (lock_ttl + 5)
---@field timeout? number seconds per store operation, everything included (5)
---@field replicas? integer WAIT for this many replicas before a save counts (0)
---@field replica_timeout? number seconds WAIT waits (1)
---@field wipe_check? number|false seconds between checks that Redis kept its data (1)
---@field pending? {shared_dict?:string,dir?:string} where the node keeps pairs a save could not write
---@field release? fun(client:table,healthy:boolean) give a client back (resty.redis: set_keepalive)
---@field sleep? fun(seconds:number)
---@field keepalive? number resty.redis pool idle seconds (60)
---@field pool_size? integer resty.redis pool size (100)

---One connection's tokens in Redis: a store with a fenced save, and the OAuth states.
---@class freshbooks.RedisStore: freshbooks.Store
local RedisStore = {}

---Deletes the connection's tokens.
---@return boolean|nil ok
---@return freshbooks.Error? err
function RedisStore.delete() end

---Keeps an OAuth state server-side for ttl seconds.
---@param state string
---@param ttl number
---@return boolean|nil ok
---@return freshbooks.Error? err
function RedisStore.put_state(state, ttl) end

---Takes (and deletes) an OAuth state: whether it was there.
---@param state string
---@return boolean|nil found
---@return freshbooks.Error? err
function RedisStore.take_state(state) end

---The stores of many connections: call it with a connection id.
---@class freshbooks.RedisKeyspace
---@overload fun(id:string):freshbooks.RedisStore
local RedisKeyspace = {}

---Every connection id with stored tokens (SCAN).
---@return string[]|nil ids
---@return freshbooks.Error? err
function RedisKeyspace.list() end

---Moves every token record of the layout before (<prefix>tokens:<id>) to its key, then deletes it.
---@return {moved:integer,kept:integer}|nil counts
---@return freshbooks.Error? err
function RedisKeyspace.migrate() end

---The pairs this process wrote back after finding the store wiped.
---@return integer
function RedisKeyspace.restored() end

---Writes back every pair this node keeps pending (option pending), after the wipe check: for a timer,
---and at a process's start.
---@return integer|nil written_back
---@return freshbooks.Error? err
function RedisKeyspace.flush() end

---Options of freshbooks.connections{...}.
---@class freshbooks.ConnectionsOptions
---@field app freshbooks.Options the app: any freshbooks.new option but tokens, store, load, save, lock
---@field store fun(id:string):freshbooks.Store the store of a connection (store.redis.keyspace)
---@field max_sessions? integer live sessions kept (LRU, default 1000)
---@field state_ttl? number seconds an OAuth state lives (600)

---A connection's state.
---@class freshbooks.ConnectionStatus
---@field id string
---@field connected boolean
---@field reauth_required boolean
---@field last_refresh? number
---@field version? integer
---@field expires_at? number
---@field scopes? string[]
---@field businesses? freshbooks.Membership[]
---@field error? freshbooks.Error

---Many connections of one app (`freshbooks.connections`).
---@class freshbooks.Connections
local Connections = {}

---The live session of a connection (made on first use).
---@param id string
---@return freshbooks.Session
function Connections:session(id) end

---Where to send the user to connect id; the state is kept server-side.
---@param id string
---@param opts? {scopes:string[]|string}
---@return string|nil url
---@return string|freshbooks.Error state_or_err
function Connections:connect_url(id, opts) end

---The OAuth callback of id's connect_url.
---@param id string
---@param query string|table
---@param state? string the state the browser brought back, when query lacks it
---@return freshbooks.Tokens|nil tokens
---@return freshbooks.Error? err
function Connections:callback(id, query, state) end

---What is known of a connection.
---@param id string
---@param opts? {refresh:boolean}
---@return freshbooks.ConnectionStatus|nil status
---@return freshbooks.Error? err
function Connections:status(id, opts) end

---Every connection id with stored tokens.
---@return string[]|nil ids
---@return freshbooks.Error? err
function Connections:list() end

---Revokes a connection at FreshBooks and deletes it from the store.
---@param id string
---@return boolean|nil ok
---@return freshbooks.Error? err
function Connections:disconnect(id) end

---How many sessions are live in this process.
---@return integer
function Connections:live_sessions() end

---Webhook signatures, as FreshBooks computes them (`freshbooks.webhook`).
---@class freshbooks.webhook
local webhook = {}

---The form fields of a delivery, in received order.
---@param body string
---@return {[1]:string,[2]:string}[] fields
function webhook.parse(body) end

---The value of field name (the first), or nil.
---@param fields {[1]:string,[2]:string}[]
---@param name string
---@return string|nil
function webhook.field(fields, name) end

---The signed message: Python's json.dumps of the fields in order.
---@param fields {[1]:string,[2]:string}[]
---@return string
function webhook.message(fields) end

---base64(HMAC-SHA256(verifier, message(fields))).
---@param verifier string
---@param fields {[1]:string,[2]:string}[]
---@return string
function webhook.sign(verifier, fields) end

---Whether signature is the fields' (in constant time). fields may be the raw body; a name -> value
---map is refused (its order is lost).
---@param verifier string
---@param fields {[1]:string,[2]:string}[]|string
---@param signature string the X-FreshBooks-Hmac-SHA256 header
---@return boolean
function webhook.verify(verifier, fields, signature) end

---Budgets of a guest run; each, spent, ends it with code budget_<name> (instructions: budget_cpu).
---@class freshbooks.GuestBudget
---@field memory? integer bytes the guest state may hold (32 MiB)
---@field instructions? integer VM instructions (1e8)
---@field time? number seconds of wall clock, API calls included (30)
---@field patterns? integer pattern-matching steps (1e6)
---@field calls? integer API requests (1000)
---@field output? integer bytes printed or returned (1 MiB)

---Options of guest.run.
---@class freshbooks.GuestOptions
---@field write? boolean allow create, update, delete, archive, send_by_email (default false)
---@field print? fun(text:string) where the script's print goes (default print)
---@field budget? freshbooks.GuestBudget
---@field usage? table filled with what the run used

---Untrusted scripts against a session, each in a Lua state of its own (`freshbooks.guest`).
---@class freshbooks.guest
---@field budget freshbooks.GuestBudget the defaults
local guest = {}

---Runs a script (text only) against fb; its results are copied out (plain data only). err.code is
---syntax, script_error, bad_result or budget_*.
---@param fb freshbooks.Session
---@param source string
---@param chunkname? string
---@param opts? freshbooks.GuestOptions
---@return true|nil ok
---@return any ... the script's results, or the error
function guest.run(fb, source, chunkname, opts) end

---A transport: a callable, t(req) -> res | nil, err; an object may add t:batch, t:stream and t:close.
---@alias freshbooks.Transport fun(req:table):table|nil,freshbooks.Error?

---A stream of requests (fb:stream; a transport's stream has the same methods).
---@class freshbooks.Stream
local Stream = {}

---Queues a request; it starts when a place is free. A bad request raises.
---@param req freshbooks.Request
---@return integer id
function Stream:add(req) end

---The next request done, in completion order: id, res | id, nil, err; nil once none is left.
---@return integer|nil id
---@return freshbooks.Response|nil res
---@return freshbooks.Error? err
function Stream:next() end

---Drops what is left (requests in flight are abandoned). Idempotent.
function Stream:close() end

---Where the library runs (`require "freshbooks.env"`), asked when it matters: a session made in
---init_by_lua serves request handlers later.
---@class freshbooks.env
local env = {}

---ngx when running inside nginx, in any phase (those that cannot yield too), else nil.
---@return table|nil
function env.nginx() end

---ngx in an OpenResty phase where cosockets and ngx.sleep work, else nil.
---@return table|nil
function env.yielding() end

---Sleeps on nginx's event loop where the phase may yield, else the thread sleeps (core.clock.sleep).
---@param seconds number
function env.sleep(seconds) end

---Seconds for intervals: nginx's clock (updated) where the phase may yield, else core.clock.now().
---@return number
function env.now() end

---One HTTP policy for both transports (`freshbooks.transport`).
---@class freshbooks.transport
local transport = {}

---A transport over one C-core client; opts go to core.http.client.
---@param opts? freshbooks.core.ClientOptions
---@return freshbooks.Transport
function transport.curl(opts) end

---Options of transport.cosocket.
---@class freshbooks.CosocketOptions
---@field timeout? number seconds for a whole request
---@field connect_timeout? number seconds
---@field max_body? integer bytes
---@field pool_size? integer the cosocket pool's size (16)
---@field keepalive? number idle seconds of a pooled connection (60)
---@field user_agent? string
---@field insecure_no_verify_tls? boolean

---OpenResty's cosockets (the same checks, deadlines and error codes as curl).
---@param opts? freshbooks.CosocketOptions
---@return freshbooks.Transport
function transport.cosocket(opts) end

---The session's default: cosockets where OpenResty can yield, else the C core (chosen per request).
---@param opts? table
---@return freshbooks.Transport
function transport.default(opts) end

---A stream on any transport (its own, or one request at a time).
---@param t freshbooks.Transport
---@param opts? {concurrency:integer}
---@return freshbooks.Stream
function transport.stream(t, opts) end

---A batch on any transport: results in order.
---@param t freshbooks.Transport
---@param reqs table[]
---@param opts? {concurrency:integer}
---@return {status:integer?,headers:table?,body:string?,err:freshbooks.Error?}[]
function transport.batch(t, reqs, opts) end

---Retry options (freshbooks.new{retry = ...}).
---@class freshbooks.RetryOptions
---@field attempts? integer (4)
---@field base_delay? number seconds (0.5)
---@field max_delay? number seconds (30)
---@field deadline? number seconds over all attempts (60)
---@field jitter? boolean a random point in [d/2, d] (true)
---@field sleep? fun(seconds:number) default core.clock.sleep, ngx.sleep under OpenResty
---@field clock? fun():number
---@field log? fun(event:table) each retry

---Retries with backoff: 429 for any method, 5xx and network failures for idempotent ones only
---(`freshbooks.retry`).
---@class freshbooks.retry
local retry = {}

---A transport that retries send.
---@param send freshbooks.Transport
---@param opts? freshbooks.RetryOptions|false false: send itself
---@return freshbooks.Transport
function retry.wrap(send, opts) end

---Raises on options retry.wrap would refuse, naming `who` ("freshbooks.new: retry").
---@param opts freshbooks.RetryOptions
---@param who string
---@param level integer error()'s level, as seen from the caller
function retry.check(opts, who, level) end

---Whether a request may be sent again after this outcome.
---@param req table
---@param res table|nil
---@param err table|nil
---@return boolean
function retry.retryable(req, res, err) end

---The billing report (`freshbooks.report`): outstanding invoices by client, totals per currency, aged.
---@class freshbooks.report
local report = {}

---Writes the report of every business (or one) to out.
---@param fb freshbooks.Session
---@param opts? {as_of:string?,business:string?,format:"table"|"csv"|"json"|nil,parallel:integer?,
---  progress:function?,width:integer?}
---@param out file*|{write:fun(self:any,s:string)} where the report goes
---@param log? fun(line:string) businesses that could not be read
---@return boolean|nil ok
---@return freshbooks.Error? err
function report.run(fb, opts, out, log) end

---Money "123.45" as integer minor units and their scale.
---@param s string
---@return integer|nil units
---@return integer scale
function report.parse_money(s) end

---The sum of two parsed amounts.
---@param a table
---@param b table
---@return table
function report.add_money(a, b) end

---Minor units as text.
---@param m integer
---@param scale integer
---@return string
function report.format_money(m, scale) end

---The aging bucket of days past due: current, 1-30, 31-60, 61-90, 90+.
---@param days_past_due integer
---@return string
function report.bucket(days_past_due) end

---An accumulator of invoices as of a day.
---@param as_of_day integer
---@return table
function report.accumulator(as_of_day) end

---A CSV field, quoted when it needs to be.
---@param v any
---@return string
function report.csv_field(v) end

---Writes one business's report as a table for people (padded by display width; fitted to `width`).
---@param out file*|{write:fun(self:any,s:string)}
---@param biz freshbooks.Membership
---@param acc table its accumulator
---@param as_of string YYYY-MM-DD
---@param width? integer columns to fit in (a terminal's)
function report.table(out, biz, acc, as_of, width) end

---Writes one business's report as CSV rows (report.CSV_HEADER is the header).
---@param out file*|{write:fun(self:any,s:string)}
---@param biz freshbooks.Membership
---@param acc table its accumulator
function report.csv(out, biz, acc) end

---The report's writer: w.business(biz, acc) writes one business (table and CSV at once, JSON at
---w.finish()); report.run and the mirror's offline report print through it.
---@param out file*|{write:fun(self:any,s:string)}
---@param format "table"|"csv"|"json"
---@param as_of string YYYY-MM-DD
---@param width? integer
---@return {business:fun(biz:table,acc:table),finish:fun()}
function report.writer(out, format, as_of, width) end

---The mirror (`freshbooks.mirror`): FreshBooks in a local SQLite file, or PostgreSQL (docs/mirror.md).
---@class freshbooks.mirror
---@field schema_version integer
---@field resources string[] the resources a mirror keeps (each a table of the same name)
local mirror = {}

---Opens (creating or migrating forward) a mirror; a newer one is refused (mirror_too_new).
---PostgreSQL: `postgres` (a conninfo or a freshbooks.mirror.postgres.session) and `connection` (whose
---rows); inside nginx read-only over cosockets (`readonly = true`, a conninfo).
---@param opts {path:string?,postgres:string|table|nil,connection:string?,backend:table?,readonly:boolean?,
---  busy_timeout:number?}
---@return freshbooks.Mirror|nil
---@return freshbooks.Error? err
function mirror.open(opts) end

---A mirror file.
---@class freshbooks.Mirror
local Mirror = {}

---Everything the first time, then what changed: per (business, resource) checkpoints moved with the data.
---@param fb freshbooks.Session
---@param opts? {businesses:string[]?,resources:string[]?,parallel:integer?,budget:table|false|nil,
---  progress:function?,reconcile:boolean|"full"|nil,reconcile_every:number?,overlap:number?,wait:number?}
---@return table|nil summary {resources = {...}, requests, errors, now}
---@return freshbooks.Error? err
---@return table? summary what was done before the error
function Mirror:sync(fb, opts) end

---A webhook event: its record read again (or marked gone); other resources and businesses ignored.
---@param fb freshbooks.Session
---@param event table {name, object_id, account_id, business_id} or webhook.parse's pairs
---@param opts? {budget:table|false|nil,progress:function?}
---@return table|nil outcome {resource, id, written, gone, requests} or {ignored = why}
---@return freshbooks.Error? err
function Mirror:apply(fb, event, opts) end

---A batch of events: the objects of one business and resource read together (100 a request).
---@param fb freshbooks.Session
---@param events table[] each as Mirror:apply takes it
---@param opts? {budget:table|false|nil,progress:function?}
---@return table|nil outcome {written, gone, requests, ignored}
---@return freshbooks.Error? err
function Mirror:apply_events(fb, events, opts) end

---One read-only SQL statement: read_only, too_many_rows, too_large, sqlite_deadline when refused.
---@param sql string
---@param params? any[]
---@param opts? {deadline:number?,max_rows:integer?,max_bytes:integer?,null:any}
---@return {columns:string[],rows:any[][]}|nil
---@return freshbooks.Error? err
function Mirror:query(sql, params, opts) end

---The businesses and the checkpoint of every (business, resource), with row counts.
---@return table|nil
---@return freshbooks.Error? err
function Mirror:status() end

---Idempotent.
function Mirror:close() end

---Reports from a mirror (`freshbooks.mirror.reports`), by SQL: no request.
---@class freshbooks.mirror.reports
local mirror_reports = {}

---The billing report per business, as report.accumulator's shape (report.writer prints it).
---@param m freshbooks.Mirror
---@param opts? {as_of:string?,business:string?}
---@return table[]|nil {{business, acc}, ...}
---@return string|freshbooks.Error as_of, or the error
function mirror_reports.billing(m, opts) end

---Revenue by client, currency and month: invoiced (sent invoices) or collected (payments).
---@param m freshbooks.Mirror
---@param opts? {from:string?,to:string?,basis:"invoiced"|"collected"|nil,business:string?}
---@return {columns:string[],rows:any[][]}|nil
---@return freshbooks.Error? err
function mirror_reports.revenue(m, opts) end

---Billable time not yet billed, by client and project, valued at the project's rate.
---@param m freshbooks.Mirror
---@param opts? {business:string?}
---@return {columns:string[],rows:any[][]}|nil
---@return freshbooks.Error? err
function mirror_reports.unbilled_time(m, opts) end

---Days sales outstanding per business and currency over the `days` (90) up to as_of.
---@param m freshbooks.Mirror
---@param opts? {as_of:string?,days:integer?,business:string?}
---@return {columns:string[],rows:any[][]}|nil
---@return freshbooks.Error? err
function mirror_reports.dso(m, opts) end

---Webhook events through a Redis stream (`freshbooks.mirror.stream`; docs/deployment.md).
---@class freshbooks.mirror.stream
local mirror_stream = {}

---@param opts {redis:table,key:string?,group:string?,timeout:number?,keepalive:number?,
---  pool_size:integer?}
---@return freshbooks.mirror.Stream
function mirror_stream.new(opts) end

---A stream of webhook events, read by one consumer group.
---@class freshbooks.mirror.Stream
local EventStream = {}

---Appends a verified delivery's event for `connection` (XADD; a cosocket inside nginx).
---@param connection string
---@param fields table webhook.parse's pairs or {name, object_id, account_id, business_id}
---@return string|nil id
---@return freshbooks.Error? err store_unavailable, bad_event
function EventStream:push(connection, fields) end

---Events pending `claim_after` seconds under other consumers (XAUTOCLAIM), then new ones (XREADGROUP).
---@param consumer string
---@param opts? {count:integer?,block:number?,claim_after:number?}
---@return table[]|nil {{id, connection, event, at, claimed}, ...}
---@return freshbooks.Error? err
function EventStream:read(consumer, opts) end

---Acknowledges (and deletes) entries after their commit.
---@param entries table[]
---@return integer|nil how many were still pending
---@return freshbooks.Error? err
function EventStream:ack(entries) end

---@return table<string,integer>|nil events pushed and not yet acknowledged, per connection
---@return freshbooks.Error? err
function EventStream:pending() end

---Idempotent.
function EventStream:close() end

---A sync worker for many connections (`freshbooks.mirror.worker`; `freshbooks sync --daemon`).
---@class freshbooks.mirror.worker
local mirror_worker = {}

---@param opts {postgres:string,connections:table,events:freshbooks.mirror.Stream?,name:string?,
---  interval:number?,concurrency:integer?,budget:table|false|nil,batch:integer?,block:number?,
---  claim_after:number?,sync:table?,log:function?}
---@return freshbooks.mirror.Worker|nil
---@return freshbooks.Error? err
function mirror_worker.new(opts) end

---@class freshbooks.mirror.Worker
local Worker = {}

---A batch of events, then one connection due synced. -> {events, synced, error}
function Worker:step(block) end
---Steps until opts.stop() or opts.steps.
function Worker:run(opts) end
---Applies one batch of events. -> acknowledged count
function Worker:drain(block) end
---Syncs one connection unless another worker holds it (sync_in_progress) or every slot is taken (concurrency).
function Worker:sync_connection(id, force) end
---The connections due, the longest waiting first.
function Worker:due() end
---The connection's mirror on this worker's session.
function Worker:mirror(id) end
---{connection, synced_at, attempted_at, lag, pending, last_error, last_error_at, worker, requests,
---businesses, resources}
function Worker:status(id) end
---Every connection's status.
function Worker:statuses() end
---Prometheus' text format.
function Worker:metrics() end
---p50, p99 and count of the last 1000 events' lag (receipt to commit), seconds.
function Worker:lag() end
---Idempotent.
function Worker:close() end

---Options of core.http.client.
---@class freshbooks.core.ClientOptions
---@field connect_timeout? number seconds (10)
---@field timeout? number seconds for a whole transfer (60)
---@field cainfo? string CA file
---@field capath? string CA directory
---@field insecure_no_verify_tls? boolean
---@field proxy? string
---@field user_agent? string
---@field max_body? integer bytes (64 MiB)
---@field share? boolean the process-wide CURLSH (true)

---A request of client:request.
---@class freshbooks.core.Request
---@field method? string
---@field url string http:// or https://
---@field headers? table<string,string|freshbooks.core.Secret>
---@field body? string|(string|freshbooks.core.Secret)[] parts are joined in C
---@field timeout? number
---@field idempotent? boolean

---A libcurl easy handle with the shared connection cache (`core.http.client`).
---@class freshbooks.core.Client
local Client = {}

---One request: status, headers, body, or nil and {code, message, curl_code, status}.
---@param req freshbooks.core.Request
---@return integer|nil status
---@return table headers_or_err
---@return string|nil body
function Client:request(req) end

---Many requests over one CURLM; results in order.
---@param reqs freshbooks.core.Request[]
---@param opts? {concurrency:integer}
---@return {status:integer?,headers:table?,body:string?,err:table?}[]
function Client:batch(reqs, opts) end

---A sliding window of requests over one CURLM: s:add(req) -> id; s:next() -> id, status, headers, body
---| id, nil, err | nil (nothing in flight); s:close().
---@param opts? {concurrency:integer}
---@return table stream
function Client:stream(opts) end

---Idempotent; __gc and __close call it.
function Client:close() end

---An opaque string: tostring shows freshbooks.secret(***), concatenation raises.
---@class freshbooks.core.Secret

---Secret values to mask in text (core.secret.masker).
---@class freshbooks.core.Masker
local Masker = {}

---s with the values masked (the same string when none is found).
---@param s string
---@return string
function Masker:mask(s) end

---Wipes the values; idempotent (__gc and __close call it).
function Masker:close() end

---A guest state (vm.new): g:resume until "done" or "error".
---@class freshbooks.vm.Guest
local Guest = {}

---Runs the script until it asks the host something: "call", {n, op, args...} | "print", text |
---"done", {n, results...} | "error", {code, message}. serve answers requests at once (plain Lua 5.1).
---@param reply? table {n =, "ok", ...} answers the last call
---@param serve? fun(kind:string,payload:any):table|false|nil
---@return string kind
---@return any payload
function Guest:resume(reply, serve) end

---What the run used: memory (peak bytes), instructions, patterns, output, seconds.
---@return table
function Guest:usage() end

---Idempotent.
function Guest:close() end

---A SQLite database (core.sqlite.open): the mirror's storage.
---@class freshbooks.core.Sqlite
local Sqlite = {}

---Runs one or more statements that answer no rows (schema, BEGIN/COMMIT, pragmas).
---@param sql string
---@return true|nil ok
---@return table? err {code, message, sqlite_code}: sqlite_busy, sqlite_readonly, sqlite_constraint, ...
function Sqlite:exec(sql) end

---One statement with `?` parameters (sqlite_multiple for more than one).
---@param sql string
---@return freshbooks.core.SqliteStatement|nil
---@return table? err
function Sqlite:prepare(sql) end

---Rows changed by the last statement.
---@return integer
function Sqlite:changes() end

---Whether a transaction is open.
---@return boolean
function Sqlite:in_transaction() end

---Statements stop with sqlite_deadline once `seconds` have passed from now (nil: no deadline). Ctrl-C
---stops them too (aborted) in programs that called core.signal.trap().
---@param seconds? number
function Sqlite:deadline(seconds) end

---While on, statements prepared may only read (SELECT, functions, recursive CTEs, pragmas that describe
---the schema): writes, ATTACH, DETACH, transactions fail to prepare (sqlite_code 23, SQLITE_AUTH).
---@param on boolean
function Sqlite:restrict(on) end

---Idempotent; statements still open keep the connection until they are closed or collected.
function Sqlite:close() end

---A prepared statement.
---@class freshbooks.core.SqliteStatement
local SqliteStatement = {}

---Resets the statement and binds ?1..?n: nil, booleans (0/1), integers (64-bit), floats, strings.
---@return freshbooks.core.SqliteStatement
function SqliteStatement:bind(...) end

---true: a row is ready; false: done.
---@return boolean|nil
---@return table? err
function SqliteStatement:step() end

---The current row's column i (1-based); NULL is nil.
---@param i integer
---@return any
function SqliteStatement:get(i) end

---The current row as an array; NULL is `null` when given (e.g. cjson.null), else a hole.
---@param null? any
---@return any[]
function SqliteStatement:row(null) end

---The result's column names.
---@return string[]
function SqliteStatement:columns() end

---Whether the statement only reads (sqlite3_stmt_readonly).
---@return boolean
function SqliteStatement:readonly() end

---Back to the first row, bindings kept.
---@return freshbooks.core.SqliteStatement
function SqliteStatement:reset() end

---Idempotent.
function SqliteStatement:close() end

---The C core (`freshbooks.core`): one table per concern (docs/core.md).
---@class freshbooks.core
---@field version string FRESHBOOKS_VERSION
---@field http freshbooks.core.http
---@field codec freshbooks.core.codec
---@field crypto freshbooks.core.crypto
---@field secret freshbooks.core.secret
---@field json freshbooks.core.json
---@field fs freshbooks.core.fs
---@field clock freshbooks.core.clock
---@field signal freshbooks.core.signal
---@field process freshbooks.core.process
---@field sqlite freshbooks.core.sqlite
local core = {}

---The guest VM (`freshbooks.vm`, freshbooks/vm.so): untrusted scripts in Lua states of their own.
---@class freshbooks.vm
local vm = {}

---A guest state for untrusted source (text only), under budgets.
---@param source string
---@param chunkname? string
---@param budgets {memory:integer,instructions:integer,time:number,patterns:integer,output:integer}
---@return freshbooks.vm.Guest|nil guest
---@return {code:string,message:string}? err syntax, budget_memory
function vm.new(source, chunkname, budgets) end

---The numbers both transports apply (core.http.limits).
---@class freshbooks.core.Limits
---@field connect_timeout number seconds (10)
---@field timeout number seconds for a whole request (60)
---@field max_body integer bytes (64 MiB)
---@field max_header_bytes integer all header lines of all answers, 1xx included (256 KiB)
---@field max_1xx integer informational answers skipped before the final one (16)
---@field concurrency integer a batch's or stream's default (8)
---@field max_concurrency integer (256)

---HTTP over libcurl (src/client.c, request.c, transfer.c, batch.c).
---@class freshbooks.core.http
---@field limits freshbooks.core.Limits the numbers both transports apply
---@field idempotent table<string,boolean> the methods that may be sent twice (GET HEAD PUT DELETE OPTIONS)
---@field curl_version string
local http = {}

---A client.
---@param opts? freshbooks.core.ClientOptions
---@return freshbooks.core.Client
function http.client(opts) end

---The request policy of client:request, rendered as an HTTP/1.1 head for transports that write their
---own bytes (the cosocket transport): {scheme, host, port, head, body, once}.
---@param req freshbooks.core.Request
---@param user_agent? string
---@return table
function http.render(req, user_agent) end

---URL and form encodings, the query encoder, base64, hex (src/codec.c).
---@class freshbooks.core.codec
local codec = {}

---RFC 3986 percent-encoding (unreserved kept).
---@param s string
---@return string
function codec.urlencode(s) end

---Percent-decoding; + is a space.
---@param s string
---@return string
function codec.urldecode(s) end

---A query string, keys sorted: {search = {ids = {1, 2}}, page = 2} -> page=2&search[ids][]=1&...
---@param t table
---@return string
function codec.query(t) end

---A form body (a table sorted by name, or {name, value} pairs in order); with secret values, body parts.
---@param t table
---@return string|table
function codec.form(t) end

---A form's {name, value} pairs in received order.
---@param s string
---@return {[1]:string,[2]:string}[]
function codec.form_decode(s) end

---RFC 4648 base64.
---@param s string
---@return string
function codec.base64(s) end

---Decodes base64.
---@param s string
---@return string|nil bytes
---@return string? err
function codec.unbase64(s) end

---Lower-case hex (strings only).
---@param s string
---@return string
function codec.hex(s) end

---HMAC-SHA256, constant-time compare, CSPRNG (src/crypto.c, OpenSSL libcrypto).
---@class freshbooks.core.crypto
local crypto = {}

---32 raw bytes; key and msg may be secrets.
---@param key string|freshbooks.core.Secret
---@param msg string|freshbooks.core.Secret
---@return string
function crypto.hmac_sha256(key, msg) end

---Constant-time comparison.
---@param a string|freshbooks.core.Secret
---@param b string|freshbooks.core.Secret
---@return boolean
function crypto.equals(a, b) end

---n bytes from the CSPRNG (n <= 1 MiB).
---@param n integer
---@return string
function crypto.random_bytes(n) end

---Opaque secrets (src/secret.c).
---@class freshbooks.core.secret
local secret = {}

---A secret holding a copy of s.
---@param s string
---@return freshbooks.core.Secret
function secret.new(s) end

---The string a secret holds.
---@param s freshbooks.core.Secret
---@return string
function secret.reveal(s) end

---Whether v is a secret.
---@param v any
---@return boolean
function secret.is(v) end

---A masker for secret values (freshbooks.redact.mask): every run of 16 or more of a value's letters and
---digits, in order (case and the characters between them ignored), is replaced by "***".
---@param values string[]
---@return freshbooks.core.Masker
function secret.masker(values) end

---FreshBooks' JSON (src/decode.c, src/encode.c).
---@class freshbooks.core.json
---@field null lightuserdata JSON null in arrays (the same value as cjson.null)
local json = {}

---JSON as FreshBooks sends it: integers as integers, object nulls left out.
---@param s string
---@return any|nil value
---@return string? err
function json.decode(s) end

---Canonical JSON (src/encode.c): object members in byte order of their keys, so the same value is the
---same text in every Lua state (the mirror stores and compares records this way). Whole numbers are
---written whole, others with 17 significant digits; NaN, infinities, functions and non-string keys
---are refused (`bad_value`).
---@param v any
---@return string|nil text
---@return table? err
function json.encode(v) end

---The mirror's storage (src/sqlite.c, libsqlite3).
---@class freshbooks.core.sqlite
local sqlite = {}

---Opens (or creates) a SQLite database; symbolic links are not followed.
---@param path string a file, or ":memory:"
---@param opts? {readonly?: boolean, create?: boolean, busy_timeout?: number}
---@return freshbooks.core.Sqlite|nil
---@return table? err sqlite_cantopen, sqlite_corrupt, ...
function sqlite.open(path, opts) end

---The token file store's support (src/lockfile.c).
---@class freshbooks.core.fs
local fs = {}

---An exclusive flock(2), waiting at most timeout seconds: a lock with :unlock().
---@param path string
---@param timeout? number
---@return table|nil lock
---@return table? err lock_timeout, ...
function fs.lock(path, timeout) end

---Reads a regular file of ours (no symlink, FIFO or device) of at most max_bytes.
---@param path string
---@param max_bytes? integer
---@return string|nil data nil alone: no such file
---@return table? err
function fs.read(path, max_bytes) end

---Writes a file atomically (temp file, fsync, rename, fsync of the directory).
---@param path string
---@param data string
---@param mode? integer
---@return boolean|nil ok
---@return table? err
function fs.write_atomic(path, data, mode) end

---Rewrites our own one-link regular file in place, within the blocks it holds (not atomic): the file
---store's last resort when `write_atomic` fails on a full disk.
---@param path string
---@param data string
---@return boolean|nil ok
---@return table? err
function fs.overwrite(path, data) end

---A monotonic clock (src/clock.c).
---@class freshbooks.core.clock
local clock = {}

---Seconds on a monotonic clock.
---@return number
function clock.now() end

---Sleeps (blocking).
---@param seconds number
function clock.sleep(seconds) end

---Seconds since the epoch, to the microsecond: times compared across processes and machines.
---@return number
function clock.time() end

---Ctrl-C as a flag, for programs that own their process (src/interrupt.c).
---@class freshbooks.core.signal
local signal = {}

---From now on SIGINT/SIGTERM abort transfers in flight instead of the interpreter's handler.
function signal.trap() end

---The signal that arrived since trap (false: none).
---@return integer
function signal.interrupted() end

---Descriptors, for programs that own their process (src/fd.c; the library never calls these).
---@class freshbooks.core.process
local process = {}

---Marks every descriptor above 2 close-on-exec (call it right before starting a program).
---@return boolean
function process.close_on_exec() end

---Fills a closed descriptor 0, 1 or 2 with /dev/null opened the other way round (a write to a closed
---stdout still fails).
---@return integer[] closed the descriptors that were closed
function process.guard_stdio() end

