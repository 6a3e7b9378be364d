/* SQLite for the mirror (lua/freshbooks/mirror/): core.sqlite.open(path, opts) -> db, prepared statements
 * with `?` parameters. In the core rather than a Debian binding because the mirror needs what neither
 * offers: 64-bit integers both ways (lua-dbi 0.7 binds numbers as doubles and reads columns with
 * sqlite3_column_int, so 3000000000 comes back as -1294967296), a deadline and Ctrl-C that stop a
 * running statement (sqlite3_progress_handler: guest scripts' budgets, `freshbooks sql`), and
 * sqlite3_stmt_readonly (read-only queries); lua-sql has no prepared statements at all.
 *   db:exec(sql)            several statements, no rows (schema, BEGIN/COMMIT, pragmas)
 *   db:prepare(sql)         one statement -> stmt
 *   stmt:bind(...)          resets, then binds ?1..?n: nil, booleans (0/1), integers (int64), floats, strings
 *   stmt:step()             true (a row), false (done) | nil, err;  stmt:row([null]), stmt:get(i)
 *   stmt:columns(), stmt:readonly(), stmt:reset(), stmt:close();  db:changes(), db:in_transaction(),
 *   db:deadline(seconds | nil), db:restrict(bool) (statements prepared while on may only read), db:close()
 * Run-time failures return nil, {code, message, sqlite_code}; bad arguments raise. */
#include <sqlite3.h>
#include <string.h>
#include "fb_internal.h"

#define DB_MT "freshbooks.sqlite"
#define STMT_MT "freshbooks.sqlite.statement"

typedef struct {
	sqlite3 *db;
	double deadline; /* fb_now() past which a running statement stops; 0: none */
	int stopped_by;  /* why the progress handler stopped the last statement: 1 deadline, 2 signal */
	int restricted;  /* db:restrict(true) */
} fb_db;

/* db:restrict(true): statements prepared from now on may only read (SELECT, reading tables, functions,
 * recursive CTEs, and pragmas that only describe the schema), and must be read-only by
 * sqlite3_stmt_readonly too: the authorizer is never asked about VACUUM (INTO a new file), and
 * sqlite3_stmt_readonly alone lets ATTACH (which creates files) and DETACH through. */
static const char *const READ_PRAGMAS[] = {"table_info", "table_xinfo", "table_list", "index_list", "index_info",
					     "foreign_key_list", "collation_list", "function_list", "integrity_check",
					     "quick_check", NULL};

static int only_reads(void *p, int action, const char *a, const char *b, const char *c, const char *d)
{
	(void)p;
	(void)b;
	(void)c;
	(void)d;
	switch (action) {
	case SQLITE_SELECT:
	case SQLITE_READ:
	case SQLITE_FUNCTION:
	case SQLITE_RECURSIVE:
		return SQLITE_OK;
	case SQLITE_UPDATE:
		/* a table-valued function's first use on a connection (json_each) declares its table and is
		 * asked to update sqlite_master's columns; a statement that really writes fails
		 * sqlite3_stmt_readonly */
		return a != NULL && strcmp(a, "sqlite_master") == 0 ? SQLITE_OK : SQLITE_DENY;
	case SQLITE_PRAGMA: {
		int i;
		for (i = 0; a != NULL && READ_PRAGMAS[i] != NULL; i++)
			if (sqlite3_stricmp(a, READ_PRAGMAS[i]) == 0)
				return SQLITE_OK;
		return SQLITE_DENY;
	}
	default:
		return SQLITE_DENY;
	}
}

typedef struct {
	sqlite3_stmt *stmt;
	fb_db *owner;
	int owner_ref; /* the db userdata, kept alive while the statement is */
} fb_stmt;

/* Stable codes for what a caller may act on; the rest is "sqlite" with SQLite's message. */
static const char *code_of(int rc, const fb_db *d)
{
	switch (rc & 0xff) {
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
		return "sqlite_busy";
	case SQLITE_READONLY:
		return "sqlite_readonly";
	case SQLITE_INTERRUPT:
		return d != NULL && d->stopped_by == 2 ? "aborted" : "sqlite_deadline";
	case SQLITE_CORRUPT:
	case SQLITE_NOTADB:
		return "sqlite_corrupt";
	case SQLITE_FULL:
		return "sqlite_full";
	case SQLITE_CONSTRAINT:
		return "sqlite_constraint";
	case SQLITE_CANTOPEN:
	case SQLITE_PERM:
	case SQLITE_AUTH:
		return "sqlite_cantopen";
	default:
		return "sqlite";
	}
}

static int fail_rc(lua_State *L, fb_db *d, int rc)
{
	const char *msg = d != NULL && d->db != NULL ? sqlite3_errmsg(d->db) : sqlite3_errstr(rc);
	if ((rc & 0xff) == SQLITE_INTERRUPT)
		msg = d != NULL && d->stopped_by == 2 ? "interrupted" : "the statement ran past its deadline";
	lua_pushnil(L);
	fb_push_error(L, code_of(rc, d), msg, strlen(msg));
	lua_pushinteger(L, rc);
	lua_setfield(L, -2, "sqlite_code");
	return 2;
}

/* Checked every 1000 virtual machine instructions: a deadline, and Ctrl-C in programs that trap it. */
static int on_progress(void *p)
{
	fb_db *d = p;
	if (fb_trapping_interrupts() && fb_interrupted()) {
		d->stopped_by = 2;
		return 1;
	}
	if (d->deadline > 0 && fb_now() > d->deadline) {
		d->stopped_by = 1;
		return 1;
	}
	return 0;
}

static fb_db *check_db(lua_State *L, int idx)
{
	fb_db *d = luaL_checkudata(L, idx, DB_MT);
	if (d->db == NULL)
		luaL_error(L, "freshbooks.sqlite: the database is closed");
	return d;
}

static fb_stmt *check_stmt(lua_State *L, int idx)
{
	fb_stmt *s = luaL_checkudata(L, idx, STMT_MT);
	if (s->stmt == NULL)
		luaL_error(L, "freshbooks.sqlite: the statement is closed");
	if (s->owner->db == NULL)
		luaL_error(L, "freshbooks.sqlite: the database is closed");
	return s;
}

static int opt_bool(lua_State *L, int t, const char *name, int dflt)
{
	int v;
	lua_getfield(L, t, name);
	if (lua_isnil(L, -1))
		v = dflt;
	else if (lua_type(L, -1) == LUA_TBOOLEAN)
		v = lua_toboolean(L, -1);
	else
		return luaL_error(L, "freshbooks.core.sqlite.open: %s must be a boolean", name);
	lua_pop(L, 1);
	return v;
}

/* core.sqlite.open(path, {readonly = false, create = not readonly, busy_timeout = 5}) -> db | nil, err */
static int l_open(lua_State *L)
{
	const char *path = luaL_checkstring(L, 1);
	int readonly = 0, create = 1, flags, rc;
	lua_Number busy = 5;
	fb_db *d;
	if (!lua_isnoneornil(L, 2)) {
		luaL_checktype(L, 2, LUA_TTABLE);
		lua_pushnil(L);
		while (lua_next(L, 2) != 0) {
			const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "?";
			if (strcmp(k, "readonly") != 0 && strcmp(k, "create") != 0 && strcmp(k, "busy_timeout") != 0)
				return luaL_error(L, "freshbooks.core.sqlite.open: unknown option '%s'", k);
			lua_pop(L, 1);
		}
		readonly = opt_bool(L, 2, "readonly", 0);
		create = opt_bool(L, 2, "create", !readonly);
		lua_getfield(L, 2, "busy_timeout");
		if (!lua_isnil(L, -1)) {
			if (lua_type(L, -1) != LUA_TNUMBER || !(lua_tonumber(L, -1) >= 0) || lua_tonumber(L, -1) > 3600)
				return luaL_error(L, "freshbooks.core.sqlite.open: busy_timeout must be seconds from 0 to 3600");
			busy = lua_tonumber(L, -1);
		}
		lua_pop(L, 1);
	}
	if (readonly && create)
		return luaL_error(L, "freshbooks.core.sqlite.open: a read-only database cannot be created");
	d = lua_newuserdata(L, sizeof *d);
	memset(d, 0, sizeof *d);
	luaL_getmetatable(L, DB_MT);
	lua_setmetatable(L, -2);
	flags = (readonly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE) | (create ? SQLITE_OPEN_CREATE : 0)
		| SQLITE_OPEN_NOFOLLOW;
	rc = sqlite3_open_v2(path, &d->db, flags, NULL);
	if (rc != SQLITE_OK) {
		const char *msg = d->db != NULL ? sqlite3_errmsg(d->db) : sqlite3_errstr(rc);
		lua_pushnil(L);
		lua_pushfstring(L, "%s: %s", path, msg);
		fb_push_error(L, code_of(rc, NULL), lua_tostring(L, -1), lua_rawlen(L, -1));
		lua_remove(L, -2);
		sqlite3_close_v2(d->db);
		d->db = NULL;
		return 2;
	}
	sqlite3_busy_timeout(d->db, (int)(busy * 1000));
	sqlite3_progress_handler(d->db, 1000, on_progress, d);
	sqlite3_extended_result_codes(d->db, 1);
	return 1;
}

/* Waits for every statement: sqlite3_close_v2 keeps the connection until the last one is finalized. */
static int l_db_close(lua_State *L)
{
	fb_db *d = luaL_checkudata(L, 1, DB_MT);
	if (d->db != NULL) {
		sqlite3_close_v2(d->db);
		d->db = NULL;
	}
	return 0;
}

static int l_db_tostring(lua_State *L)
{
	fb_db *d = luaL_checkudata(L, 1, DB_MT);
	lua_pushstring(L, d->db != NULL ? "freshbooks.sqlite" : "freshbooks.sqlite (closed)");
	return 1;
}

static int l_exec(lua_State *L)
{
	fb_db *d = check_db(L, 1);
	const char *sql = luaL_checkstring(L, 2);
	int rc;
	d->stopped_by = 0;
	rc = sqlite3_exec(d->db, sql, NULL, NULL, NULL);
	if (rc != SQLITE_OK)
		return fail_rc(L, d, rc);
	lua_pushboolean(L, 1);
	return 1;
}

/* Only whitespace, semicolons and comments may follow the one statement. */
static int only_trailer(const char *p)
{
	for (;;) {
		while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r' || *p == '\f' || *p == ';')
			p++;
		if (p[0] == '-' && p[1] == '-') {
			while (*p != '\0' && *p != '\n')
				p++;
		} else if (p[0] == '/' && p[1] == '*') {
			const char *e = strstr(p + 2, "*/");
			if (e == NULL)
				return 1;
			p = e + 2;
		} else {
			return *p == '\0';
		}
	}
}

static int l_prepare(lua_State *L)
{
	fb_db *d = check_db(L, 1);
	size_t len;
	const char *sql = luaL_checklstring(L, 2, &len);
	const char *tail = NULL;
	sqlite3_stmt *stmt = NULL;
	fb_stmt *s;
	int rc;
	if (strlen(sql) != len)
		return luaL_error(L, "freshbooks.sqlite: the statement contains a zero byte");
	/* The statement's userdata and its hold on the db come first: they may raise (out of memory),
	 * and then nothing prepared is left without an owner. */
	s = lua_newuserdata(L, sizeof *s);
	s->stmt = NULL;
	s->owner = d;
	s->owner_ref = LUA_NOREF;
	luaL_getmetatable(L, STMT_MT);
	lua_setmetatable(L, -2);
	lua_pushvalue(L, 1);
	s->owner_ref = luaL_ref(L, LUA_REGISTRYINDEX);
	d->stopped_by = 0;
	rc = sqlite3_prepare_v2(d->db, sql, (int)len + 1, &stmt, &tail);
	if (rc != SQLITE_OK)
		return fail_rc(L, d, rc);
	if (stmt == NULL) {
		lua_pushnil(L);
		fb_push_error(L, "sqlite_empty", "no statement", 12);
		return 2;
	}
	if (d->restricted && !sqlite3_stmt_readonly(stmt)) {
		sqlite3_finalize(stmt);
		lua_pushnil(L);
		fb_push_error(L, "sqlite", "not authorized", 14);
		lua_pushinteger(L, SQLITE_AUTH);
		lua_setfield(L, -2, "sqlite_code");
		return 2;
	}
	if (tail != NULL && !only_trailer(tail)) {
		sqlite3_finalize(stmt);
		lua_pushnil(L);
		fb_push_error(L, "sqlite_multiple", "one statement at a time", 23);
		return 2;
	}
	s->stmt = stmt;
	return 1;
}

static int l_changes(lua_State *L)
{
	fb_db *d = check_db(L, 1);
	lua_pushinteger(L, sqlite3_changes(d->db));
	return 1;
}

static int l_in_transaction(lua_State *L)
{
	fb_db *d = check_db(L, 1);
	lua_pushboolean(L, !sqlite3_get_autocommit(d->db));
	return 1;
}

/* db:deadline(seconds | nil): statements stop with sqlite_deadline once that long has passed from now. */
static int l_deadline(lua_State *L)
{
	fb_db *d = check_db(L, 1);
	double s = fb_optseconds(L, 2);
	d->deadline = s < 0 ? 0 : fb_now() + s; /* the monotonic clock is past 0 */
	return 0;
}

static int l_restrict(lua_State *L)
{
	fb_db *d = check_db(L, 1);
	d->restricted = lua_toboolean(L, 2);
	sqlite3_set_authorizer(d->db, d->restricted ? only_reads : NULL, NULL);
	return 0;
}

static int l_stmt_close(lua_State *L)
{
	fb_stmt *s = luaL_checkudata(L, 1, STMT_MT);
	if (s->stmt != NULL) {
		sqlite3_finalize(s->stmt);
		s->stmt = NULL;
	}
	luaL_unref(L, LUA_REGISTRYINDEX, s->owner_ref); /* nothing for LUA_NOREF */
	s->owner_ref = LUA_NOREF;
	return 0;
}

static int l_stmt_tostring(lua_State *L)
{
	fb_stmt *s = luaL_checkudata(L, 1, STMT_MT);
	lua_pushstring(L, s->stmt != NULL ? "freshbooks.sqlite.statement" : "freshbooks.sqlite.statement (closed)");
	return 1;
}

static int bind_one(lua_State *L, sqlite3_stmt *stmt, int i, int idx)
{
	switch (lua_type(L, idx)) {
	case LUA_TNIL:
	case LUA_TNONE:
		return sqlite3_bind_null(stmt, i);
	case LUA_TBOOLEAN:
		return sqlite3_bind_int(stmt, i, lua_toboolean(L, idx));
	case LUA_TNUMBER: {
#if LUA_VERSION_NUM >= 503
		if (lua_isinteger(L, idx))
			return sqlite3_bind_int64(stmt, i, (sqlite3_int64)lua_tointeger(L, idx));
		return sqlite3_bind_double(stmt, i, (double)lua_tonumber(L, idx));
#else
		/* Every number is a double here: whole ones within 2^53 are integers, as 5.3+ would have them. */
		double v = (double)lua_tonumber(L, idx);
		if (v == (double)(sqlite3_int64)v && v > -9007199254740992.0 && v < 9007199254740992.0)
			return sqlite3_bind_int64(stmt, i, (sqlite3_int64)v);
		return sqlite3_bind_double(stmt, i, v);
#endif
	}
	case LUA_TSTRING: {
		size_t len;
		const char *v = lua_tolstring(L, idx, &len);
		return sqlite3_bind_text64(stmt, i, v, (sqlite3_uint64)len, SQLITE_TRANSIENT, SQLITE_UTF8);
	}
	default:
		return luaL_argerror(L, idx, lua_pushfstring(L, "nil, boolean, number or string expected, got %s",
							      luaL_typename(L, idx)));
	}
}

/* stmt:bind(...) -> stmt: resets the statement and binds every parameter (missing ones are NULL). */
static int l_bind(lua_State *L)
{
	fb_stmt *s = check_stmt(L, 1);
	int n = lua_gettop(L) - 1, want = sqlite3_bind_parameter_count(s->stmt), i;
	if (n > want)
		return luaL_error(L, "freshbooks.sqlite: %d values for %d parameters", n, want);
	sqlite3_reset(s->stmt);
	sqlite3_clear_bindings(s->stmt);
	for (i = 1; i <= n; i++) {
		int rc = bind_one(L, s->stmt, i, i + 1);
		if (rc != SQLITE_OK)
			return fail_rc(L, s->owner, rc);
	}
	lua_settop(L, 1);
	return 1;
}

static int l_step(lua_State *L)
{
	fb_stmt *s = check_stmt(L, 1);
	int rc;
	s->owner->stopped_by = 0;
	rc = sqlite3_step(s->stmt);
	if (rc == SQLITE_ROW) {
		lua_pushboolean(L, 1);
		return 1;
	}
	if (rc == SQLITE_DONE) {
		lua_pushboolean(L, 0);
		return 1;
	}
	sqlite3_reset(s->stmt);
	return fail_rc(L, s->owner, rc);
}

static void push_column(lua_State *L, sqlite3_stmt *stmt, int i, int null_idx)
{
	switch (sqlite3_column_type(stmt, i)) {
	case SQLITE_INTEGER:
#if LUA_VERSION_NUM >= 503
		lua_pushinteger(L, (lua_Integer)sqlite3_column_int64(stmt, i));
#else
		lua_pushnumber(L, (lua_Number)sqlite3_column_int64(stmt, i));
#endif
		break;
	case SQLITE_FLOAT:
		lua_pushnumber(L, (lua_Number)sqlite3_column_double(stmt, i));
		break;
	case SQLITE_TEXT:
	case SQLITE_BLOB: {
		const void *p = sqlite3_column_blob(stmt, i);
		lua_pushlstring(L, p != NULL ? p : "", (size_t)sqlite3_column_bytes(stmt, i));
		break;
	}
	default:
		if (null_idx)
			lua_pushvalue(L, null_idx);
		else
			lua_pushnil(L);
	}
}

/* stmt:get(i) -> the current row's column i (1-based); NULL is nil. */
static int l_get(lua_State *L)
{
	fb_stmt *s = check_stmt(L, 1);
	lua_Integer i = luaL_checkinteger(L, 2);
	if (i < 1 || i > sqlite3_column_count(s->stmt))
		return luaL_argerror(L, 2, "no such column");
	push_column(L, s->stmt, (int)i - 1, 0);
	return 1;
}

/* stmt:row([null]) -> array of the current row's values; NULL is `null` when given, else a hole. */
static int l_row(lua_State *L)
{
	fb_stmt *s = check_stmt(L, 1);
	int n = sqlite3_column_count(s->stmt), i, null_idx = lua_isnoneornil(L, 2) ? 0 : 2;
	lua_createtable(L, n, 0);
	for (i = 0; i < n; i++) {
		push_column(L, s->stmt, i, null_idx);
		lua_rawseti(L, -2, i + 1);
	}
	return 1;
}

static int l_columns(lua_State *L)
{
	fb_stmt *s = check_stmt(L, 1);
	int n = sqlite3_column_count(s->stmt), i;
	lua_createtable(L, n, 0);
	for (i = 0; i < n; i++) {
		const char *name = sqlite3_column_name(s->stmt, i);
		lua_pushstring(L, name != NULL ? name : "?");
		lua_rawseti(L, -2, i + 1);
	}
	return 1;
}

static int l_readonly(lua_State *L)
{
	fb_stmt *s = check_stmt(L, 1);
	lua_pushboolean(L, sqlite3_stmt_readonly(s->stmt));
	return 1;
}

static int l_reset(lua_State *L)
{
	fb_stmt *s = check_stmt(L, 1);
	sqlite3_reset(s->stmt);
	lua_settop(L, 1);
	return 1;
}

void fb_open_sqlite(lua_State *L)
{
	static const luaL_Reg db_methods[] = {
		{"exec", l_exec},
		{"prepare", l_prepare},
		{"changes", l_changes},
		{"in_transaction", l_in_transaction},
		{"deadline", l_deadline},
		{"restrict", l_restrict},
		{"close", l_db_close},
		{NULL, NULL},
	};
	static const luaL_Reg stmt_methods[] = {
		{"bind", l_bind},
		{"step", l_step},
		{"get", l_get},
		{"row", l_row},
		{"columns", l_columns},
		{"readonly", l_readonly},
		{"reset", l_reset},
		{"close", l_stmt_close},
		{NULL, NULL},
	};
	fb_new_class(L, DB_MT, db_methods, l_db_close, l_db_tostring);
	fb_new_class(L, STMT_MT, stmt_methods, l_stmt_close, l_stmt_tostring);
	lua_pushcfunction(L, l_open);
	lua_setfield(L, -2, "open");
	lua_pushstring(L, sqlite3_libversion());
	lua_setfield(L, -2, "sqlite_version");
}
