#include <sys/xattr.h>
#include <sys/mount.h>
#include <sys/vfs.h>
