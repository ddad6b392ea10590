#pragma once
#include <openssl/evp.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/kdf.h>
#include <openssl/core_names.h>
#include <openssl/params.h>
#include <openssl/rand.h>

/* Builds the OSSL_PARAM list for an HMAC so Swift never assembles OSSL_PARAM
   arrays itself. Returns NULL when the digest is unknown or cannot key an HMAC
   (an XOF such as SHAKE). */
static inline EVP_MAC_CTX *qb_hmac_new(const char *digest, const void *key, size_t keylen) {
    EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    if (mac == NULL) return NULL;
    EVP_MAC_CTX *ctx = EVP_MAC_CTX_new(mac);
    EVP_MAC_free(mac);
    if (ctx == NULL) return NULL;
    OSSL_PARAM params[2];
    params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)digest, 0);
    params[1] = OSSL_PARAM_construct_end();
    /* A zero-length key is legal for HMAC; OpenSSL wants a non-NULL pointer. */
    static const unsigned char empty = 0;
    if (EVP_MAC_init(ctx, keylen ? (const unsigned char *)key : &empty, keylen, params) != 1) {
        EVP_MAC_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}
#include <openssl/sha.h>
