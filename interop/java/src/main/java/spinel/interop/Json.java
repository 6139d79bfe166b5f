// A minimal JSON encoder for the peer's output (maps, lists, strings,
// numbers, booleans, null), so the peer needs no JSON library.
package spinel.interop;

import java.util.Iterator;
import java.util.List;
import java.util.Map;

final class Json {
    private Json() {}

    static String encode(Object value) {
        StringBuilder s = new StringBuilder();
        write(s, value);
        return s.toString();
    }

    private static void write(StringBuilder s, Object value) {
        if (value == null) {
            s.append("null");
        } else if (value instanceof String) {
            string(s, (String) value);
        } else if (value instanceof Number || value instanceof Boolean) {
            s.append(value);
        } else if (value instanceof Map) {
            s.append('{');
            Iterator<? extends Map.Entry<?, ?>> it = ((Map<?, ?>) value).entrySet().iterator();
            while (it.hasNext()) {
                Map.Entry<?, ?> e = it.next();
                string(s, String.valueOf(e.getKey()));
                s.append(':');
                write(s, e.getValue());
                if (it.hasNext()) {
                    s.append(',');
                }
            }
            s.append('}');
        } else if (value instanceof List) {
            s.append('[');
            List<?> list = (List<?>) value;
            for (int i = 0; i < list.size(); i++) {
                if (i > 0) {
                    s.append(',');
                }
                write(s, list.get(i));
            }
            s.append(']');
        } else {
            string(s, value.toString());
        }
    }

    private static void string(StringBuilder s, String v) {
        s.append('"');
        for (int i = 0; i < v.length(); i++) {
            char c = v.charAt(i);
            switch (c) {
                case '"':
                    s.append("\\\"");
                    break;
                case '\\':
                    s.append("\\\\");
                    break;
                case '\n':
                    s.append("\\n");
                    break;
                default:
                    if (c < 0x20) {
                        s.append(String.format("\\u%04x", (int) c));
                    } else {
                        s.append(c);
                    }
            }
        }
        s.append('"');
    }
}
