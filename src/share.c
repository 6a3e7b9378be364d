/* Process-wide libcurl state: curl_global_init once (unless the embedding host opted out), and the
 * CURLSH share through which clients reuse connections, DNS answers and TLS sessions. */
#include <pthread.h>
#include <stdlib.h>
#include "freshbooks.h"
#include "http.h"

static pthread_mutex_t g_mutex = PTHREAD_MUTEX_INITIALIZER;
static int g_skip_global_init, g_global_init_done;
static CURLSH *g_host_share; /* supplied by the embedding host, never freed by us */
static CURLSH *g_own_share;  /* ours: created on first use, freed with its last client */
static long g_own_share_refs;
static pthread_mutex_t g_share_locks[CURL_LOCK_DATA_LAST];
static int g_share_locks_ready;

void freshbooks_skip_curl_global_init(void)
{
	pthread_mutex_lock(&g_mutex);
	g_skip_global_init = 1;
	pthread_mutex_unlock(&g_mutex);
}

void freshbooks_set_share(CURLSH *share)
{
	pthread_mutex_lock(&g_mutex);
	g_host_share = share;
	pthread_mutex_unlock(&g_mutex);
}

/* Called by luaopen: curl_global_init once per process, unless the host opted out. */
int fb_curl_global_init(void)
{
	CURLcode rc = CURLE_OK;
	pthread_mutex_lock(&g_mutex);
	if (!g_global_init_done && !g_skip_global_init && getenv("FRESHBOOKS_NO_CURL_GLOBAL_INIT") == NULL) {
		rc = curl_global_init(CURL_GLOBAL_DEFAULT);
		g_global_init_done = rc == CURLE_OK;
	}
	pthread_mutex_unlock(&g_mutex);
	return (int)rc;
}

/* Our share is used from one thread at a time in practice, but a host may run Lua states on several
 * threads: the locks keep DNS and TLS-session sharing correct then. */
static void share_lock(CURL *h, curl_lock_data data, curl_lock_access access, void *u)
{
	(void)h, (void)access, (void)u;
	pthread_mutex_lock(&g_share_locks[data]);
}

static void share_unlock(CURL *h, curl_lock_data data, void *u)
{
	(void)h, (void)u;
	pthread_mutex_unlock(&g_share_locks[data]);
}

/* Returns the share a new client should use (NULL on failure); *own tells whether it is ours. */
CURLSH *fb_share_acquire(int *own)
{
	CURLSH *sh;
	pthread_mutex_lock(&g_mutex);
	if (g_host_share != NULL) {
		*own = 0;
		sh = g_host_share;
	} else {
		*own = 1;
		if (g_own_share == NULL) {
			int i;
			if (!g_share_locks_ready) {
				for (i = 0; i < CURL_LOCK_DATA_LAST; i++)
					pthread_mutex_init(&g_share_locks[i], NULL);
				g_share_locks_ready = 1;
			}
			sh = curl_share_init();
			if (sh != NULL &&
			    (curl_share_setopt(sh, CURLSHOPT_LOCKFUNC, share_lock) != CURLSHE_OK ||
			     curl_share_setopt(sh, CURLSHOPT_UNLOCKFUNC, share_unlock) != CURLSHE_OK ||
			     curl_share_setopt(sh, CURLSHOPT_SHARE, CURL_LOCK_DATA_CONNECT) != CURLSHE_OK ||
			     curl_share_setopt(sh, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS) != CURLSHE_OK ||
			     curl_share_setopt(sh, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION) != CURLSHE_OK)) {
				curl_share_cleanup(sh);
				sh = NULL;
			}
			g_own_share = sh;
		}
		sh = g_own_share;
		if (sh != NULL)
			g_own_share_refs++;
	}
	pthread_mutex_unlock(&g_mutex);
	return sh;
}

/* One more user of a share a client holds (a stream's easy handles outlive their client's close). */
void fb_share_retain(CURLSH *sh, int own)
{
	if (sh == NULL || !own)
		return;
	pthread_mutex_lock(&g_mutex);
	if (sh == g_own_share)
		g_own_share_refs++;
	pthread_mutex_unlock(&g_mutex);
}

void fb_share_release(CURLSH *sh, int own)
{
	if (sh == NULL || !own)
		return;
	pthread_mutex_lock(&g_mutex);
	if (sh == g_own_share && --g_own_share_refs == 0) {
		curl_share_cleanup(g_own_share); /* closes the cached connections */
		g_own_share = NULL;
	}
	pthread_mutex_unlock(&g_mutex);
}

