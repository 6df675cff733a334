// Connects to opmond's gRPC listener as a Java security server component
// does: the internal PKCS#12 store as key store and trust store, host-name
// check against "localhost", ALPN h2. It sends the HTTP/2 client preface
// and an empty SETTINGS frame and waits for the server's SETTINGS frame,
// which comes only after the server has accepted the client certificate.
// Prints "ok PROTOCOL SUITE ALPN" or fails with the exception.
// Usage: javac -d DIR H2Handshake.java; java -cp DIR H2Handshake PORT KEYSTORE PASSWORD
import java.io.DataInputStream;
import java.io.FileInputStream;
import java.io.OutputStream;
import java.net.Socket;
import java.nio.charset.StandardCharsets;
import java.security.KeyStore;
import javax.net.ssl.KeyManagerFactory;
import javax.net.ssl.SSLContext;
import javax.net.ssl.SSLParameters;
import javax.net.ssl.SSLSocket;
import javax.net.ssl.TrustManagerFactory;

public class H2Handshake {
    public static void main(String[] args) throws Exception {
        int port = Integer.parseInt(args[0]);
        char[] pw = args[2].toCharArray();
        KeyStore ks = KeyStore.getInstance("PKCS12");
        try (FileInputStream in = new FileInputStream(args[1])) {
            ks.load(in, pw);
        }
        KeyManagerFactory kmf = KeyManagerFactory.getInstance(KeyManagerFactory.getDefaultAlgorithm());
        kmf.init(ks, pw);
        TrustManagerFactory tmf = TrustManagerFactory.getInstance(TrustManagerFactory.getDefaultAlgorithm());
        tmf.init(ks);
        SSLContext ctx = SSLContext.getInstance("TLS");
        ctx.init(kmf.getKeyManagers(), tmf.getTrustManagers(), null);
        Socket raw = new Socket("127.0.0.1", port);
        raw.setSoTimeout(10000);
        SSLSocket s = (SSLSocket) ctx.getSocketFactory().createSocket(raw, "localhost", port, true);
        SSLParameters p = s.getSSLParameters();
        p.setEndpointIdentificationAlgorithm("HTTPS");
        p.setApplicationProtocols(new String[] {"h2"});
        s.setSSLParameters(p);
        s.startHandshake();
        OutputStream out = s.getOutputStream();
        out.write("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".getBytes(StandardCharsets.US_ASCII));
        out.write(new byte[] {0, 0, 0, 4, 0, 0, 0, 0, 0});
        out.flush();
        DataInputStream in = new DataInputStream(s.getInputStream());
        byte[] header = new byte[9];
        in.readFully(header);
        if (header[3] != 4) {
            throw new IllegalStateException("first frame is of type " + header[3] + ", not SETTINGS");
        }
        System.out.println("ok " + s.getSession().getProtocol() + " " + s.getSession().getCipherSuite() + " " + s.getApplicationProtocol());
        s.close();
    }
}
