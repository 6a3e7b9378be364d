/* PostgreSQL for the mirror (lua/freshbooks/mirror/postgres.lua): core.pg.connect(conninfo, opts) -> db.
 * In the core, over libpq, rather than a Debian binding, for what the mirror needs and neither offers
 * (measured, docs/mirror.md): lua-dbi-postgresql 0.7 reads 64-bit columns through a 32-bit call
 * (3000000000 comes back as -1294967296) and lua-sql-postgres 2.6 has no prepared statements and
 * answers every value as a string; neither can stop a statement at a deadline or on Ctrl-C (PQcancel),
 * bound an answer as it arrives (single-row mode), or keep libpq's notices off stderr.
 *   db:exec(sql)                   statements without parameters or rows (DDL, BEGIN/COMMIT)
 *   db:prepare(name, sql)          a named prepared statement ($1..$n)
 *   db:run(name, ...)              runs it with these parameters -> rows, changes | nil, err
 *   db:query(sql, params, {max_rows, max_bytes, null}) -> {columns, rows} | nil, err: one unnamed
 *                                  statement, its rows taken one at a time and refused past the bounds
 *   db:deadline(seconds | nil)     statements running past it are cancelled (pg_deadline)
 *   db:ok(), db:pid(), db:close()
 * Parameters: nil is NULL, booleans 1/0 (PostgreSQL reads both as integer or boolean), integers whole,
 * other numbers with 17 digits, strings as they are (text format: no zero byte). Values read: int2/4/8
 * and oid as integers (Lua 5.1/LuaJIT: numbers within 2^53, beyond as decimal strings), numeric as an
 * integer when it is whole and fits (else its exact text), float4/8 as numbers, bool as a boolean,
 * everything else as its text; NULL is nil (or `null`).
 * Run-time failures return nil, {code, message, sqlstate}; bad arguments raise. Codes: pg_connection
 * (the session is gone: connect, network, server shutdown), pg_auth, pg_conflict (serialization or
 * deadlock: the transaction may be tried again), pg_constraint, pg_full, pg_denied, read_only,
 * pg_deadline, aborted (Ctrl-C), too_many_rows, too_large, pg. */
#include <libpq-fe.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "fb_internal.h"

#define DB_MT "freshbooks.pg"

typedef struct {
	PGconn *conn;
	double deadline; /* seconds a statement may run; 0: none */
	double until;    /* when the statement in flight passes its deadline (fb_now); 0: never */
	int stopped_by;  /* why the last statement was cancelled: 1 deadline, 2 signal */
	int closed;      /* db:close() was called (a lost connection is conn == NULL, closed == 0) */
	PGresult *held;  /* the result being read into Lua: a Lua error (out of memory) leaves it here, for
	                    the next call or the close to free */
} fb_pg;

static void let_go(fb_pg *d)
{
	if (d->held != NULL)
		PQclear(d->held);
	d->held = NULL;
}

static PGresult *hold(fb_pg *d, PGresult *res)
{
	let_go(d);
	d->held = res;
	return res;
}

/* How long a cancelled statement's answer is awaited before the connection is given up. */
#define CANCEL_GRACE 5.0

static void quiet(void *arg, const char *message)
{
	(void)arg;
	(void)message;
}

static const char *code_of_state(const char *state)
{
	if (state == NULL)
		return "pg";
	if (strncmp(state, "08", 2) == 0 || strcmp(state, "57P01") == 0 || strcmp(state, "57P02") == 0
	    || strcmp(state, "57P03") == 0)
		return "pg_connection";
	if (strncmp(state, "28", 2) == 0)
		return "pg_auth";
	if (strcmp(state, "40001") == 0 || strcmp(state, "40P01") == 0)
		return "pg_conflict";
	if (strncmp(state, "23", 2) == 0)
		return "pg_constraint";
	if (strncmp(state, "53", 2) == 0)
		return "pg_full";
	if (strcmp(state, "42501") == 0)
		return "pg_denied";
	if (strcmp(state, "25006") == 0)
		return "read_only";
	if (strcmp(state, "57014") == 0)
		return "pg_deadline";
	return "pg";
}

/* nil, {code, message, sqlstate} from a result (NULL: from the connection). */
static int fail_pg(lua_State *L, fb_pg *d, PGresult *res)
{
	const char *state = res != NULL ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
	const char *msg = res != NULL ? PQresultErrorMessage(res) : NULL;
	const char *code;
	size_t len;
	if (msg == NULL || *msg == '\0')
		msg = d->conn != NULL ? PQerrorMessage(d->conn) : "no connection";
	code = code_of_state(state);
	if (d->conn == NULL || PQstatus(d->conn) != CONNECTION_OK)
		code = "pg_connection";
	if (strcmp(code, "pg_deadline") == 0 && d->stopped_by == 2)
		code = "aborted";
	if (strcmp(code, "pg_deadline") == 0 && d->stopped_by == 1)
		msg = "the statement ran past its deadline";
	if (strcmp(code, "aborted") == 0)
		msg = "interrupted";
	len = strlen(msg);
	while (len > 0 && (msg[len - 1] == '\n' || msg[len - 1] == ' '))
		len--;
	lua_pushnil(L);
	fb_push_error(L, code, msg, len);
	if (state != NULL) {
		lua_pushstring(L, state);
		lua_setfield(L, -2, "sqlstate");
	}
	return 2;
}

static void discard(fb_pg *d);

/* The connection, ready for a statement: what a Lua error (out of memory) left half-read before is
 * freed, and the rest of its answer cancelled and read away. */
static fb_pg *check_db(lua_State *L, int idx)
{
	fb_pg *d = luaL_checkudata(L, idx, DB_MT);
	if (d->closed)
		luaL_error(L, "freshbooks.pg: the connection is closed");
	let_go(d);
	if (d->conn != NULL && PQtransactionStatus(d->conn) == PQTRANS_ACTIVE) {
		d->until = fb_now() + CANCEL_GRACE;
		discard(d);
	}
	return d;
}

/* A connection given up (its server stopped answering a cancel): every later call says so. */
static int lost(lua_State *L)
{
	return fb_fail(L, "pg_connection", "the connection was lost");
}

static void give_up(fb_pg *d)
{
	if (d->conn != NULL)
		PQfinish(d->conn);
	d->conn = NULL;
}

/* Waits until the socket is readable (or writable), at most `ms`; checking Ctrl-C and the deadline
 * each time round. -> 0 ready or timed out; 1 stop (stopped_by says why). */
static int wait_socket(fb_pg *d, int for_write, int ms, double until, int signals)
{
	struct pollfd p;
	p.fd = PQsocket(d->conn);
	p.events = for_write ? POLLOUT : POLLIN;
	p.revents = 0;
	if (p.fd < 0)
		return 0;
	(void)poll(&p, 1, ms);
	if (signals && fb_trapping_interrupts() && fb_interrupted()) {
		d->stopped_by = 2;
		return 1;
	}
	if (until > 0 && fb_now() > until) {
		d->stopped_by = 1;
		return 1;
	}
	return 0;
}

/* A PQsend*'s outcome; its statement's deadline counts from now, however many waits it takes. */
static int sent(fb_pg *d, int ok)
{
	d->until = ok && d->deadline > 0 ? fb_now() + d->deadline : 0;
	return ok;
}

/* After a PQsend*: flushes, then reads until the first result is ready (or every result, when
 * `single` is 0 the caller takes them one by one). Cancels the statement at the deadline or on Ctrl-C
 * and goes on reading its (error) answer, so the connection stays usable. -> 0, or -1 (the connection
 * failed: PQerrorMessage says why). */
static int await(fb_pg *d)
{
	double until = d->until;
	int cancelled = 0;
	for (;;) {
		int flushed = PQflush(d->conn);
		if (flushed < 0)
			return -1;
		if (flushed == 0 && !PQisBusy(d->conn))
			return 0;
		if (wait_socket(d, flushed == 1, 100, until, !cancelled)) {
			if (cancelled) {
				/* no answer to the cancel either: the server is gone or stopped */
				give_up(d);
				return -1;
			}
			{
				PGcancel *c = PQgetCancel(d->conn);
				char buf[256];
				if (c != NULL) {
					(void)PQcancel(c, buf, (int)sizeof buf);
					PQfreeCancel(c);
				}
			}
			cancelled = 1;
			until = fb_now() + CANCEL_GRACE;
		}
		if (PQconsumeInput(d->conn) == 0)
			return -1;
	}
}

/* core.pg.connect(conninfo, {timeout = 10}) -> db | nil, err: libpq's connection string or URI. */
static int l_connect(lua_State *L)
{
	const char *info = luaL_checkstring(L, 1);
	lua_Number timeout = 10;
	fb_pg *d;
	double until;
	PostgresPollingStatusType st = PGRES_POLLING_WRITING;
	if (!lua_isnoneornil(L, 2)) {
		luaL_checktype(L, 2, LUA_TTABLE);
		lua_pushnil(L);
		while (lua_next(L, 2) != 0) {
			const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "?";
			if (strcmp(k, "timeout") != 0)
				return luaL_error(L, "freshbooks.core.pg.connect: unknown option '%s'", k);
			lua_pop(L, 1);
		}
		lua_getfield(L, 2, "timeout");
		if (!lua_isnil(L, -1)) {
			if (lua_type(L, -1) != LUA_TNUMBER || !(lua_tonumber(L, -1) > 0) || lua_tonumber(L, -1) > 3600)
				return luaL_error(L, "freshbooks.core.pg.connect: timeout must be seconds from 0 to 3600");
			timeout = lua_tonumber(L, -1);
		}
		lua_pop(L, 1);
	}
	d = lua_newuserdata(L, sizeof *d);
	memset(d, 0, sizeof *d);
	luaL_getmetatable(L, DB_MT);
	lua_setmetatable(L, -2);
	d->conn = PQconnectStart(info);
	if (d->conn == NULL)
		return fb_fail(L, "pg_connection", "out of memory");
	if (PQstatus(d->conn) == CONNECTION_BAD)
		st = PGRES_POLLING_FAILED;
	until = fb_now() + (double)timeout;
	while (st != PGRES_POLLING_OK && st != PGRES_POLLING_FAILED) {
		if (fb_now() > until) {
			PQfinish(d->conn);
			d->conn = NULL;
			return fb_fail(L, "pg_connection", "no connection within %d s", (int)timeout);
		}
		if (wait_socket(d, st == PGRES_POLLING_WRITING, 100, 0, 1)) {
			PQfinish(d->conn);
			d->conn = NULL;
			return fb_fail(L, "aborted", "interrupted");
		}
		st = PQconnectPoll(d->conn);
	}
	if (st == PGRES_POLLING_FAILED) {
		const char *msg = PQerrorMessage(d->conn);
		/* libpq's text names the host and says what failed; it never holds the password */
		const char *code = strstr(msg, "authentication") != NULL || strstr(msg, "password") != NULL
					   ? "pg_auth" : "pg_connection";
		size_t len = strlen(msg);
		while (len > 0 && (msg[len - 1] == '\n' || msg[len - 1] == ' '))
			len--;
		lua_pushnil(L);
		fb_push_error(L, code, msg, len);
		PQfinish(d->conn);
		d->conn = NULL;
		return 2;
	}
	PQsetNoticeProcessor(d->conn, quiet, NULL);
	if (PQsetnonblocking(d->conn, 1) != 0) {
		PQfinish(d->conn);
		d->conn = NULL;
		return fb_fail(L, "pg_connection", "cannot make the connection non-blocking");
	}
	return 1;
}

static int l_close(lua_State *L)
{
	fb_pg *d = luaL_checkudata(L, 1, DB_MT);
	give_up(d);
	let_go(d);
	d->closed = 1;
	return 0;
}

static int l_tostring(lua_State *L)
{
	fb_pg *d = luaL_checkudata(L, 1, DB_MT);
	lua_pushstring(L, d->conn != NULL ? "freshbooks.pg" : "freshbooks.pg (closed)");
	return 1;
}

/* Every result of the statement sent; -> the last one's failure pushed (2) or 0 when all went well. */
static int drain(lua_State *L, fb_pg *d)
{
	PGresult *res;
	int failed = 0;
	if (await(d) != 0)
		return fail_pg(L, d, NULL);
	while ((res = hold(d, PQgetResult(d->conn))) != NULL) {
		ExecStatusType st = PQresultStatus(res);
		if (!failed && st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK && st != PGRES_EMPTY_QUERY
		    && st != PGRES_SINGLE_TUPLE) {
			fail_pg(L, d, res);
			failed = 1;
		}
		let_go(d);
		if (await(d) != 0) {
			if (failed)
				lua_pop(L, 2);
			return fail_pg(L, d, NULL);
		}
	}
	return failed ? 2 : 0;
}

static int l_exec(lua_State *L)
{
	fb_pg *d = check_db(L, 1);
	if (d->conn == NULL)
		return lost(L);
	const char *sql = luaL_checkstring(L, 2);
	int rc;
	d->stopped_by = 0;
	if (!sent(d, PQsendQuery(d->conn, sql)))
		return fail_pg(L, d, NULL);
	rc = drain(L, d);
	if (rc)
		return rc;
	lua_pushboolean(L, 1);
	return 1;
}

static int l_prepare(lua_State *L)
{
	fb_pg *d = check_db(L, 1);
	if (d->conn == NULL)
		return lost(L);
	const char *name = luaL_checkstring(L, 2);
	const char *sql = luaL_checkstring(L, 3);
	int rc;
	d->stopped_by = 0;
	if (!sent(d, PQsendPrepare(d->conn, name, sql, 0, NULL)))
		return fail_pg(L, d, NULL);
	rc = drain(L, d);
	if (rc)
		return rc;
	lua_pushboolean(L, 1);
	return 1;
}

/* The parameters at first..last as text, into `vals` (strings made on the stack stay there until the
 * call returns). */
static void params(lua_State *L, int first, int last, const char **vals)
{
	int i;
	for (i = first; i <= last; i++) {
		const char **v = &vals[i - first];
		switch (lua_type(L, i)) {
		case LUA_TNIL:
			*v = NULL;
			break;
		case LUA_TBOOLEAN:
			*v = lua_toboolean(L, i) ? "1" : "0";
			break;
		case LUA_TNUMBER: {
			char tmp[64];
#if LUA_VERSION_NUM >= 503
			if (lua_isinteger(L, i)) {
				snprintf(tmp, sizeof tmp, "%lld", (long long)lua_tointeger(L, i));
			} else
#endif
			{
				double x = (double)lua_tonumber(L, i);
				if (x != x || x == 1.0 / 0.0 || x == -1.0 / 0.0)
					luaL_argerror(L, i, "NaN and infinity cannot be stored");
				/* range first: casting a double outside long long's is undefined */
				if (x > -9007199254740992.0 && x < 9007199254740992.0 && x == (double)(long long)x)
					snprintf(tmp, sizeof tmp, "%lld", (long long)x);
				else
					snprintf(tmp, sizeof tmp, "%.17g", x);
			}
			lua_pushstring(L, tmp);
			*v = lua_tostring(L, -1);
			break;
		}
		case LUA_TSTRING: {
			size_t len;
			const char *s = lua_tolstring(L, i, &len);
			if (strlen(s) != len)
				luaL_argerror(L, i, "a string with a zero byte cannot be stored as text");
			*v = s;
			break;
		}
		default:
			luaL_argerror(L, i, lua_pushfstring(L, "nil, boolean, number or string expected, got %s",
							      luaL_typename(L, i)));
		}
	}
}

/* Pushes column c of row r of res, converted by its type (NULL: the value at null_idx, or nil). */
static void push_value(lua_State *L, PGresult *res, int r, int c, int null_idx)
{
	const char *v;
	int len;
	if (PQgetisnull(res, r, c)) {
		if (null_idx)
			lua_pushvalue(L, null_idx);
		else
			lua_pushnil(L);
		return;
	}
	v = PQgetvalue(res, r, c);
	len = PQgetlength(res, r, c);
	switch (PQftype(res, c)) {
	case 16: /* bool */
		lua_pushboolean(L, v[0] == 't');
		return;
	case 20: /* int8 */
	case 21: /* int2 */
	case 23: /* int4 */
	case 26: /* oid */
	case 1700: { /* numeric: whole and within range as an integer, else its exact text */
		char *end;
		long long x;
		int whole = len > 0 && len < 20 && strchr(v, '.') == NULL && strchr(v, 'N') == NULL;
		if (whole) {
			x = strtoll(v, &end, 10);
			if (*end == '\0') {
#if LUA_VERSION_NUM >= 503
				lua_pushinteger(L, (lua_Integer)x);
				return;
#else
				if (x > -9007199254740992LL && x < 9007199254740992LL) {
					lua_pushnumber(L, (lua_Number)x);
					return;
				}
#endif
			}
		}
		lua_pushlstring(L, v, (size_t)len);
		return;
	}
	case 700: /* float4 */
	case 701: /* float8 */
		lua_pushlstring(L, v, (size_t)len);
		lua_pushnumber(L, lua_tonumber(L, -1));
		lua_remove(L, -2);
		return;
	default:
		lua_pushlstring(L, v, (size_t)len);
	}
}

static void push_rows(lua_State *L, PGresult *res, int null_idx)
{
	int nr = PQntuples(res), nc = PQnfields(res), r, c;
	lua_createtable(L, nr, 0);
	for (r = 0; r < nr; r++) {
		lua_createtable(L, nc, 0);
		for (c = 0; c < nc; c++) {
			push_value(L, res, r, c, null_idx);
			lua_rawseti(L, -2, c + 1);
		}
		lua_rawseti(L, -2, r + 1);
	}
}

/* db:run(name, ...) -> rows, changes | nil, err */
static int l_run(lua_State *L)
{
	fb_pg *d = check_db(L, 1);
	if (d->conn == NULL)
		return lost(L);
	const char *name = luaL_checkstring(L, 2);
	int n = lua_gettop(L) - 2, top, rc;
	const char **vals;
	PGresult *res, *last = NULL;
	if (n > 1000)
		return luaL_error(L, "freshbooks.pg: %d parameters", n);
	vals = lua_newuserdata(L, (size_t)(n > 0 ? n : 1) * sizeof *vals);
	top = lua_gettop(L);
	params(L, 3, 2 + n, vals);
	d->stopped_by = 0;
	if (!sent(d, PQsendQueryPrepared(d->conn, name, n, vals, NULL, NULL, 0)))
		return fail_pg(L, d, NULL);
	lua_settop(L, top);
	if (await(d) != 0)
		return fail_pg(L, d, NULL);
	while ((res = PQgetResult(d->conn)) != NULL) {
		last = hold(d, res);
		if (await(d) != 0) {
			let_go(d);
			return fail_pg(L, d, NULL);
		}
	}
	if (last == NULL)
		return fail_pg(L, d, NULL);
	if (PQresultStatus(last) != PGRES_COMMAND_OK && PQresultStatus(last) != PGRES_TUPLES_OK) {
		rc = fail_pg(L, d, last);
		let_go(d);
		return rc;
	}
	push_rows(L, last, 0);
	{
		const char *t = PQcmdTuples(last);
		lua_pushinteger(L, (lua_Integer)(t != NULL && *t ? atoll(t) : 0));
	}
	let_go(d);
	return 2;
}

static int opt_int(lua_State *L, int t, const char *k, lua_Integer dflt)
{
	lua_Integer v = dflt;
	lua_getfield(L, t, k);
	if (!lua_isnil(L, -1)) {
		lua_Number n = lua_tonumber(L, -1);
		if (lua_type(L, -1) != LUA_TNUMBER || !(n >= 0))
			return luaL_error(L, "freshbooks.pg: query: %s must be a number >= 0", k);
		v = n > 2147483647 ? 2147483647 : (lua_Integer)n; /* (cast within range only) */
	}
	lua_pop(L, 1);
	return (int)(v > 2147483647 ? 2147483647 : v);
}

/* Reads what is left of the statement's answer after a refusal, so the connection can be used again. */
static void discard(fb_pg *d)
{
	PGresult *res;
	PGcancel *c = PQgetCancel(d->conn);
	if (c != NULL) {
		char buf[256];
		(void)PQcancel(c, buf, (int)sizeof buf);
		PQfreeCancel(c);
	}
	while (await(d) == 0 && (res = PQgetResult(d->conn)) != NULL)
		PQclear(res);
}

/* db:query(sql, params, {max_rows, max_bytes, null}) -> {columns = {...}, rows = {...}} | nil, err */
static int l_query(lua_State *L)
{
	fb_pg *d = check_db(L, 1);
	if (d->conn == NULL)
		return lost(L);
	const char *sql = luaL_checkstring(L, 2);
	int n = 0, i, max_rows = 0, max_bytes = 0, null_idx = 0, count = 0, have_cols = 0;
	long long bytes = 0;
	const char **vals;
	PGresult *res;
	if (!lua_isnoneornil(L, 3)) {
		luaL_checktype(L, 3, LUA_TTABLE);
		n = (int)lua_rawlen(L, 3);
	}
	lua_settop(L, 4);
	if (!lua_isnil(L, 4)) {
		luaL_checktype(L, 4, LUA_TTABLE);
		max_rows = opt_int(L, 4, "max_rows", 0);
		max_bytes = opt_int(L, 4, "max_bytes", 0);
		lua_getfield(L, 4, "null");
		if (!lua_isnil(L, -1))
			null_idx = lua_gettop(L);
		else
			lua_pop(L, 1);
	}
	if (n > 1000)
		return luaL_error(L, "freshbooks.pg: %d parameters", n);
	vals = lua_newuserdata(L, (size_t)(n > 0 ? n : 1) * sizeof *vals);
	{
		int base = lua_gettop(L);
		for (i = 1; i <= n; i++)
			lua_rawgeti(L, 3, i);
		params(L, base + 1, base + n, vals);
	}
	d->stopped_by = 0;
	if (!sent(d, PQsendQueryParams(d->conn, sql, n, NULL, vals, NULL, NULL, 0)))
		return fail_pg(L, d, NULL);
	if (!PQsetSingleRowMode(d->conn)) {
		discard(d);
		return fb_fail(L, "pg", "single-row mode was refused");
	}
	lua_newtable(L); /* the answer */
	lua_newtable(L); /* its rows */
	for (;;) {
		ExecStatusType st;
		if (await(d) != 0)
			return fail_pg(L, d, NULL);
		res = hold(d, PQgetResult(d->conn));
		if (res == NULL)
			break;
		st = PQresultStatus(res);
		if (st != PGRES_SINGLE_TUPLE && st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
			int rc = fail_pg(L, d, res);
			let_go(d);
			while (await(d) == 0 && (res = PQgetResult(d->conn)) != NULL)
				PQclear(res);
			return rc;
		}
		if (!have_cols) {
			int nc = PQnfields(res), c;
			lua_createtable(L, nc, 0);
			for (c = 0; c < nc; c++) {
				lua_pushstring(L, PQfname(res, c));
				lua_rawseti(L, -2, c + 1);
			}
			lua_setfield(L, -3, "columns");
			have_cols = 1;
		}
		if (st == PGRES_SINGLE_TUPLE) {
			int nc = PQnfields(res), c;
			if (max_rows > 0 && count >= max_rows) {
				let_go(d);
				discard(d);
				return fb_fail(L, "too_many_rows", "more than %d rows", max_rows);
			}
			lua_createtable(L, nc, 0);
			for (c = 0; c < nc; c++) {
				bytes += PQgetlength(res, 0, c);
				push_value(L, res, 0, c, null_idx);
				lua_rawseti(L, -2, c + 1);
			}
			if (max_bytes > 0 && bytes > max_bytes) {
				let_go(d);
				discard(d);
				return fb_fail(L, "too_large", "the answer passed %d bytes", max_bytes);
			}
			lua_rawseti(L, -2, ++count);
		}
		let_go(d);
	}
	lua_setfield(L, -2, "rows");
	return 1;
}

/* db:deadline(seconds | nil): each statement from now on is cancelled once it has run that long. */
static int l_deadline(lua_State *L)
{
	fb_pg *d = check_db(L, 1);
	double s = fb_optseconds(L, 2);
	d->deadline = s < 0 ? 0 : s > 0 ? s : 1e-9;
	return 0;
}

static int l_ok(lua_State *L)
{
	fb_pg *d = luaL_checkudata(L, 1, DB_MT);
	lua_pushboolean(L, d->conn != NULL && PQstatus(d->conn) == CONNECTION_OK);
	return 1;
}

static int l_pid(lua_State *L)
{
	fb_pg *d = check_db(L, 1);
	if (d->conn == NULL)
		return lost(L);
	lua_pushinteger(L, PQbackendPID(d->conn));
	return 1;
}

/* core.pg.code_of(sqlstate) -> the error code the binding gives it (one table for both clients). */
static int l_code_of(lua_State *L)
{
	lua_pushstring(L, code_of_state(luaL_optstring(L, 1, NULL)));
	return 1;
}

/* core.pg.scram(password, salt, iterations, auth_message) -> client_proof, server_signature (raw
 * bytes): SCRAM-SHA-256 (RFC 5802, 7677) as PostgreSQL's SASL authentication asks it, for the mirror's
 * reader over nginx cosockets (lua/freshbooks/mirror/pgwire.lua), which has no libpq. */
static int l_scram(lua_State *L)
{
	size_t plen, slen, alen;
	const char *pw = fb_checkbytes(L, 1, &plen, "freshbooks.core.pg.scram: password");
	const char *salt = luaL_checklstring(L, 2, &slen);
	lua_Integer iter = luaL_checkinteger(L, 3);
	const char *auth = luaL_checklstring(L, 4, &alen);
	unsigned char salted[32], client_key[32], stored_key[32], server_key[32], sig[32], proof[32];
	unsigned int n = 32;
	int i, ok;
	if (iter < 1 || iter > 10000000)
		return luaL_argerror(L, 3, "1..10000000 iterations expected");
	ok = PKCS5_PBKDF2_HMAC(pw, (int)plen, (const unsigned char *)salt, (int)slen, (int)iter, EVP_sha256(), 32,
			       salted) == 1
	     && HMAC(EVP_sha256(), salted, 32, (const unsigned char *)"Client Key", 10, client_key, &n) != NULL
	     && SHA256(client_key, 32, stored_key) != NULL
	     && HMAC(EVP_sha256(), stored_key, 32, (const unsigned char *)auth, alen, sig, &n) != NULL;
	if (ok) {
		for (i = 0; i < 32; i++)
			proof[i] = client_key[i] ^ sig[i];
		ok = HMAC(EVP_sha256(), salted, 32, (const unsigned char *)"Server Key", 10, server_key, &n) != NULL
		     && HMAC(EVP_sha256(), server_key, 32, (const unsigned char *)auth, alen, sig, &n) != NULL;
	}
	/* the keys derived from the password go before anything that may raise or return */
	OPENSSL_cleanse(salted, sizeof salted);
	OPENSSL_cleanse(client_key, sizeof client_key);
	OPENSSL_cleanse(stored_key, sizeof stored_key);
	OPENSSL_cleanse(server_key, sizeof server_key);
	if (!ok)
		return fb_fail(L, "pg_auth", "PBKDF2 or HMAC failed");
	lua_pushlstring(L, (const char *)proof, 32);
	lua_pushlstring(L, (const char *)sig, 32);
	return 2;
}

void fb_open_pg(lua_State *L)
{
	static const luaL_Reg methods[] = {
		{"exec", l_exec},
		{"prepare", l_prepare},
		{"run", l_run},
		{"query", l_query},
		{"deadline", l_deadline},
		{"ok", l_ok},
		{"pid", l_pid},
		{"close", l_close},
		{NULL, NULL},
	};
	fb_new_class(L, DB_MT, methods, l_close, l_tostring);
	lua_pushcfunction(L, l_connect);
	lua_setfield(L, -2, "connect");
	lua_pushcfunction(L, l_scram);
	lua_setfield(L, -2, "scram");
	lua_pushcfunction(L, l_code_of);
	lua_setfield(L, -2, "code_of");
	lua_pushinteger(L, PQlibVersion());
	lua_setfield(L, -2, "libpq_version");
}
