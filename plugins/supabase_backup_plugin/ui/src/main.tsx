// The entry the Airflow UI loads: the default export is the component it renders, in the nav
// ("Backups") and as a tab on a DAG's page (it then passes dagId).
import { BackupsPage } from "./BackupsPage";

export interface PluginProps {
  dagId?: string;
}

const BackupsPlugin = (props: PluginProps) => <BackupsPage dagId={props.dagId} />;

export default BackupsPlugin;
