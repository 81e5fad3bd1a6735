"""Opt-in at-least-once delivery for the stand-in's RPC server (--ack-after-handle).

oslo.messaging (checked in 18.3.1: amqpdriver.RpcAMQPListener.__call__ and
rpc/server.py RPCServer._process_incoming) acknowledges an RPC message in the consumer callback,
BEFORE it is dispatched: a process killed between the ack and the end of the handler loses that
message (at-most-once), exactly like a real nova-network. With --ack-after-handle the stand-in
instead acks after the handler (and its fsynced record line) returned: a kill then redelivers the
message to the next consumer (at-least-once: check.py reports it as duplicated, never as lost).
This pokes at oslo.messaging's private classes, on purpose and only in the stand-in.
"""
import logging
import sys

LOG = logging.getLogger("nova-standin.ackmode")


def enable():
    from oslo_messaging._drivers import amqpdriver
    from oslo_messaging.rpc import dispatcher as rpc_dispatcher
    from oslo_messaging.rpc import server as rpc_server

    # 1. the consumer callback no longer acks on receipt
    amqpdriver.RpcAMQPListener.__call__ = amqpdriver.AMQPListener.__call__

    # 2. an RPC message's acknowledge() schedules the ack on the consumer (poll) thread
    def acknowledge(self):
        def _do_ack():
            try:
                self.message.acknowledge()
            except Exception as exc:   # connection lost: the broker redelivers
                LOG.warning("ack failed: %s", exc)
        self._message_operations_handler.do(_do_ack)
    amqpdriver.AMQPIncomingMessage.acknowledge = acknowledge

    # 3. the server dispatches first, then acks
    class AckAfterHandleServer(rpc_server.RPCServer):
        def _process_incoming(self, incoming):
            message = incoming[0]
            failure = None
            res = None
            try:
                res = self.dispatcher.dispatch(message)
            except rpc_dispatcher.ExpectedException as e:
                failure = e.exc_info
            except Exception:
                failure = sys.exc_info()
                LOG.exception("Exception during message handling")
            message.acknowledge()
            try:
                if failure is None:
                    message.reply(res)
                else:
                    message.reply(failure=failure)
            except Exception:
                LOG.exception("Can not send reply")
            finally:
                del failure

    return AckAfterHandleServer
