// DynamoDB Local on one address only (im-local's, see dynamodb_local.rs). Its own main,
// `java -jar DynamoDBLocal.jar`, has no bind option: its DynamoDBProxyServer makes a Jetty
// Server(port), whose one connector listens on every interface. This does what that main
// does with the same arguments (as of DynamoDB Local 3.x), except that the connector is
// given one host before the server starts, so the JVM never listens anywhere else.
//
//   java -cp DynamoDBLocal.jar DynamoDbLocalOnLoopback.java HOST [DynamoDB Local's options]
//
// Telemetry is not configured (the main would only configure it when -disableTelemetry is
// absent; im-local always passes it). Prints "listening on HOST:PORT" once it accepts
// connections; exits 1 if it cannot bind or if DynamoDB Local's classes are not as expected
// (another version: the failure says so rather than listening on every interface).

import java.lang.reflect.Field;
import java.util.Arrays;

import org.eclipse.jetty.server.Connector;
import org.eclipse.jetty.server.Server;
import org.eclipse.jetty.server.ServerConnector;

import software.amazon.dynamodb.services.local.main.ServerRunner;
import software.amazon.dynamodb.services.local.server.DynamoDBProxyServer;

public class DynamoDbLocalOnLoopback {
    public static void main(String[] args) throws Exception {
        if (args.length < 1) {
            System.err.println("usage: DynamoDbLocalOnLoopback HOST [DynamoDB Local options]");
            System.exit(2);
        }
        String host = args[0];
        String[] options = Arrays.copyOfRange(args, 1, args.length);
        DynamoDBProxyServer proxy = ServerRunner.createServerFromCommandLineArgs(options);
        Field field = DynamoDBProxyServer.class.getDeclaredField("server");
        field.setAccessible(true);
        Server server = (Server) field.get(proxy);
        Connector[] connectors = server.getConnectors();
        if (connectors.length == 0) {
            fail("DynamoDB Local's Jetty server has no connector to bind");
        }
        for (Connector connector : connectors) {
            if (!(connector instanceof ServerConnector)) {
                fail("DynamoDB Local's Jetty connector is a " + connector.getClass().getName()
                        + ", not a ServerConnector: cannot bind it to " + host);
            }
            ((ServerConnector) connector).setHost(host);
        }
        try {
            // safeStart: Server.start() and nothing else (start() would swallow a bind
            // failure and send telemetry).
            proxy.safeStart();
        } catch (Exception e) {
            fail("could not start DynamoDB Local on " + host + ": " + e);
        }
        for (Connector connector : connectors) {
            ServerConnector c = (ServerConnector) connector;
            System.out.println("listening on " + c.getHost() + ":" + c.getLocalPort());
        }
        System.out.flush();
        server.join();
    }

    private static void fail(String message) {
        System.err.println("DynamoDbLocalOnLoopback: " + message);
        System.exit(1);
    }
}
