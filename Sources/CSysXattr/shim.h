#include <sys/xattr.h>
#include <sys/mount.h>
