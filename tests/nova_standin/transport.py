"""oslo.messaging transport built from nova.conf flags, shared by nova_network.py and cast.py.

Queue persistence (checked in oslo.messaging's rabbit driver, see README.md):
  the server queue `network.<host>` is declared by declare_topic_consumer with
  auto_delete=amqp_auto_delete (default False) and durable=amqp_durable_queues (default False),
  never exclusive. We set both explicitly: amqp_auto_delete=False (the queue outlives its consumer,
  so casts made while no nova-network runs wait for the standby's) and, by default,
  amqp_durable_queues=True (it also outlives a broker restart). Both can be overridden from the
  flagfile with nova's own flag names (--amqp_durable_queues / --noamqp_durable_queues,
  --amqp_auto_delete). Caster and server must agree: the exchange `nova` is declared with the same
  durability by both.
"""
import urllib.parse
import warnings

warnings.filterwarnings("ignore", message="(?s).*[Ee]ventlet")

import oslo_messaging  # noqa: E402
from oslo_config import cfg  # noqa: E402
from oslo_messaging import opts as om_opts  # noqa: E402

EXCHANGE = "nova"
TOPIC = "network"


def transport_url(flags):
    url = flags.get("transport_url")
    if url:
        return url
    host = flags.get("rabbit_host", "localhost")
    port = flags.get_int("rabbit_port", 5672)
    user = flags.get("rabbit_userid", "guest")
    password = flags.get("rabbit_password", "guest")
    vhost = flags.get("rabbit_virtual_host", "/")
    vpath = "" if vhost == "/" else urllib.parse.quote(vhost, safe="")
    return "rabbit://%s:%s@%s:%d/%s" % (
        urllib.parse.quote(user, safe=""), urllib.parse.quote(password, safe=""),
        host, port, vpath)


def make_conf(flags):
    # the global CONF: oslo.messaging registers some groups (tracing) only there
    conf = cfg.CONF
    for group, opts in om_opts.list_opts():
        conf.register_opts(opts, group=None if group in (None, "DEFAULT") else group)
    conf(args=[], project="nova-standin", default_config_files=[], default_config_dirs=[])
    conf.set_override("control_exchange", flags.get("control_exchange", EXCHANGE))
    rabbit = "oslo_messaging_rabbit"
    conf.set_override("amqp_auto_delete", flags.get_bool("amqp_auto_delete", False), group=rabbit)
    conf.set_override("amqp_durable_queues", flags.get_bool("amqp_durable_queues", True),
                      group=rabbit)
    conf.set_override("rabbit_ha_queues", flags.get_bool("rabbit_ha_queues", False), group=rabbit)
    # A consumer that dies without closing its connection (a powered-off server) keeps the
    # messages the broker pushed to it until the broker notices, by AMQP heartbeats, and requeues
    # them: a short heartbeat and a small prefetch bound that. nova's own flag names.
    conf.set_override("heartbeat_timeout_threshold",
                      flags.get_int("heartbeat_timeout_threshold", 60), group=rabbit)
    conf.set_override("rabbit_qos_prefetch_count",
                      flags.get_int("rabbit_qos_prefetch_count", 0), group=rabbit)
    # connection retries: quick, so a broker that comes back is found within a second or two
    conf.set_override("rabbit_retry_interval", 1, group=rabbit)
    conf.set_override("rabbit_retry_backoff", 1, group=rabbit)
    conf.set_override("rabbit_interval_max", 2, group=rabbit)
    return conf


def make_transport(flags):
    conf = make_conf(flags)
    url = transport_url(flags)
    return conf, oslo_messaging.get_rpc_transport(conf, url=url), url


def redact(url):
    p = urllib.parse.urlsplit(url)
    if p.password:
        netloc = p.netloc.replace(":" + p.password + "@", ":***@")
        return urllib.parse.urlunsplit((p.scheme, netloc, p.path, p.query, p.fragment))
    return url
