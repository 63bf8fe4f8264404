#ifndef FERRY_CMICROHTTPD_SHIM_H
#define FERRY_CMICROHTTPD_SHIM_H

#include <stddef.h>
#include <stdint.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/types.h>
#include <sys/socket.h>
#include <microhttpd.h>

/// Swift cannot call the variadic MHD_start_daemon: every option goes through one MHD_OPTION_ARRAY.
static inline struct MHD_Daemon *CMicroHTTPD_start(unsigned int flags,
                                                   MHD_AccessHandlerCallback handler, void *handler_cls,
                                                   struct MHD_OptionItem *options) {
    return MHD_start_daemon(flags, 0, NULL, NULL, handler, handler_cls,
                            MHD_OPTION_ARRAY, options, MHD_OPTION_END);
}

/// The port the daemon listens on (the real one when port 0 was asked for); 0 on failure.
static inline uint16_t CMicroHTTPD_bound_port(struct MHD_Daemon *daemon) {
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(daemon, MHD_DAEMON_INFO_BIND_PORT);
    return info == NULL ? 0 : info->port;
}

/// The peer address of a connection, or NULL.
static inline const struct sockaddr *CMicroHTTPD_client_address(struct MHD_Connection *connection) {
    const union MHD_ConnectionInfo *info =
        MHD_get_connection_info(connection, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    return info == NULL ? NULL : info->client_addr;
}

/// The socket of a connection, or -1.
static inline int CMicroHTTPD_socket(struct MHD_Connection *connection) {
    const union MHD_ConnectionInfo *info =
        MHD_get_connection_info(connection, MHD_CONNECTION_INFO_CONNECTION_FD);
    return info == NULL ? -1 : info->connect_fd;
}

/// Option items: MHD_OptionItem's `value` is an intptr_t and `ptr_value` a pointer.
static inline struct MHD_OptionItem CMicroHTTPD_option(enum MHD_OPTION option, intptr_t value, void *pointer) {
    struct MHD_OptionItem item = { option, value, pointer };
    return item;
}

/// Swift cannot receive a va_list: the library's log callback formats here and hands the line on.
typedef void (*CMicroHTTPD_line_logger)(void *cls, const char *line);
struct CMicroHTTPD_log_target {
    CMicroHTTPD_line_logger function;
    void *cls;
};

static inline void CMicroHTTPD_format_log(void *cls, const char *format, va_list arguments) {
    struct CMicroHTTPD_log_target *target = (struct CMicroHTTPD_log_target *) cls;
    char line[512];
    vsnprintf(line, sizeof line, format, arguments);
    target->function(target->cls, line);
}

/// The address of CMicroHTTPD_format_log, for MHD_OPTION_EXTERNAL_LOGGER.
static inline intptr_t CMicroHTTPD_log_formatter(void) {
    return (intptr_t) &CMicroHTTPD_format_log;
}

#endif
