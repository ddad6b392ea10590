#pragma once
#include <scrypt-kdf.h>
