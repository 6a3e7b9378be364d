/* The baseline for bench/run.lua: N GETs of one URL over one libcurl easy handle (one kept-alive
 * connection), the body discarded. Prints "raw_get: N requests in S s: R req/s, C us cpu/request"
 * (CPU: this process's user + system time, which the server's share of the two cores does not blur).
 *   FB_BENCH_TOKEN=<access token> build/bench/raw_get URL N */
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static size_t discard(char *p, size_t size, size_t n, void *ud)
{
	(void)p;
	(void)ud;
	return size * n;
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	const char *token = getenv("FB_BENCH_TOKEN");
	char auth[4096];
	struct curl_slist *headers = NULL;
	CURL *h;
	long n, i, status = 0;
	double t0, took;
	clock_t c0;
	int rc = 0;

	if (argc != 3 || (n = atol(argv[2])) <= 0) {
		fprintf(stderr, "usage: FB_BENCH_TOKEN=... %s URL N\n", argv[0]);
		return 2;
	}
	snprintf(auth, sizeof auth, "Authorization: Bearer %s", token ? token : "");
	curl_global_init(CURL_GLOBAL_DEFAULT);
	h = curl_easy_init();
	headers = curl_slist_append(headers, auth);
	headers = curl_slist_append(headers, "Api-Version: alpha");
	curl_easy_setopt(h, CURLOPT_URL, argv[1]);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, discard);
	curl_easy_setopt(h, CURLOPT_TIMEOUT, 30L);
	t0 = now();
	c0 = clock();
	for (i = 0; i < n; i++) {
		CURLcode cc = curl_easy_perform(h);
		if (cc != CURLE_OK) {
			fprintf(stderr, "raw_get: %s\n", curl_easy_strerror(cc));
			rc = 1;
			break;
		}
		curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
		if (status != 200) {
			fprintf(stderr, "raw_get: HTTP %ld\n", status);
			rc = 1;
			break;
		}
	}
	took = now() - t0;
	if (rc == 0)
		printf("raw_get: %ld requests in %.3f s: %.0f req/s, %.1f us cpu/request\n", n, took, (double)n / took,
		       (double)(clock() - c0) / CLOCKS_PER_SEC / (double)n * 1e6);
	curl_slist_free_all(headers);
	curl_easy_cleanup(h);
	curl_global_cleanup();
	return rc;
}
