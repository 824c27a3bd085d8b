#include "quantize/error.h"
